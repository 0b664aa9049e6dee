"""Two CPU processes with the gloo backend, launched by torchrun."""

import subprocess
import sys
from pathlib import Path

import torch

from pyro_cvae.checkpoint import list_checkpoints, load_checkpoint

WORKER = Path(__file__).with_name("_ddp_worker.py")


def test_two_processes_stay_identical_and_the_loss_falls(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", str(WORKER), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["loss"] == r1["loss"]  # the epoch loss is summed over both shards
    assert r0["loss"][-1] < r0["loss"][0] - 3
    # only rank 0 wrote the run folder, and its checkpoint holds both ranks' RNG states
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert ckpt["epoch"] == 4 and len(ckpt["rng_ranks"]) == 2
    for k in r0["state"]:
        assert torch.equal(ckpt["model"][k], r0["state"][k])
