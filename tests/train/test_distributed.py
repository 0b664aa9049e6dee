"""Two CPU processes with the gloo backend, launched by torchrun."""

import socket
import subprocess
import sys
from pathlib import Path

import torch

from pyro_cvae.checkpoint import list_checkpoints, load_checkpoint

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stay_identical_and_see_disjoint_shards(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), str(WORKER), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["loss"] == r1["loss"]  # the epoch loss is summed over both shards
    assert len(r0["loss"]) == 2 and r0["loss"][-1] < r0["loss"][0]
    # each rank took 200 / 2 / 25 = 4 steps an epoch (one process takes 8), on its own images:
    # per epoch the two shards are disjoint and together cover all 200 training images
    batches = [[b for b in r["seen"] if len(b) == 25] for r in (r0, r1)]  # not validation
    assert [len(b) for b in batches] == [8, 8]
    for epoch in range(2):
        rows = [
            {
                tuple(img.flatten().tolist())
                for b in per_rank[4 * epoch : 4 * epoch + 4]
                for img in b
            }
            for per_rank in batches
        ]
        assert len(rows[0]) == len(rows[1]) == 100
        assert not rows[0] & rows[1]
    # only rank 0 wrote the run folder, and its checkpoint holds both ranks' RNG states
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert ckpt["epoch"] == 2 and len(ckpt["rng_ranks"]) == 2
    for k in r0["state"]:
        assert torch.equal(ckpt["model"][k], r0["state"][k])
