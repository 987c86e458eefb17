"""definet.allocator: freed tensor memory stays in the process, so a forward pass does not
fault its tensors in page by page."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from definet.allocator import ENV_SWITCH

# Ten forward passes of a 2-layer DefiNet on 150 atoms and 4,000 edges (per-edge tensors of
# ~3 MB); prints whether the allocator was tuned and the minor page faults the passes took.
CHURN = """
import resource, torch
from definet.allocator import keep_freed_memory
from definet.nn import DefiNet, DefiNetConfig
print(keep_freed_memory())
torch.manual_seed(0)
n, e = 150, 4000
model = DefiNet(DefiNetConfig(num_layers=2)).eval()
args = (torch.randint(1, 50, (n,)), torch.zeros(n, dtype=torch.long), torch.rand(n, 3) * 15,
        torch.randint(0, n, (2, e)), torch.zeros(e, 3))
with torch.inference_mode():
    model(*args)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        model(*args)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def churn(switch: str) -> tuple[str, int]:
    env = os.environ | {ENV_SWITCH: switch}
    out = subprocess.run(
        [sys.executable, "-c", CHURN], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_tensors_are_reused_instead_of_mapped_again() -> None:
    tuned, tuned_faults = churn("1")
    left, left_faults = churn("0")
    assert (tuned, left) == ("True", "False")
    # untuned, freed blocks go back to the kernel and every new one faults in page by page
    # (about 100,000 faults here; 3 tuned)
    assert left_faults > 20_000, f"untuned: {left_faults} faults (tuned: {tuned_faults})"
    assert tuned_faults < 2_000, f"tuned: {tuned_faults} faults (untuned: {left_faults})"
