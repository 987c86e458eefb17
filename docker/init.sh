#!/usr/bin/env bash
# One-shot set-up of the compose stack (idempotent): initialise the jobflow-remote queue
# database if it has never been initialised, then the results store indexes.
set -euo pipefail

python - <<'PY'
from jobflow_remote.jobs.jobcontroller import JobController

jc = JobController.from_project_name()  # JFREMOTE_PROJECT
if jc.auxiliary.find_one({"next_id": {"$exists": True}}) is None:
    jc.reset()
    print("jobflow-remote queue database initialised")
else:
    print("jobflow-remote queue database already initialised")
PY

definet store init --store-config "${DEFINET_STORE_CONFIG:-/config/store.yaml}"
