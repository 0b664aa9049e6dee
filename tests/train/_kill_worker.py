"""Run by test_reliability.py: ``pyro-cvae train`` in this process, stopped at a chosen moment.

    python tests/train/_kill_worker.py OUT [--resume] [--sigkill-at-step N | --sigint-at-step N |
                                       --sigkill-in-write N]

``--sigkill-at-step N`` kills the process (SIGKILL, no clean-up) after N training steps of this
process; ``--sigint-at-step N`` sends it Ctrl-C there; ``--sigkill-in-write N`` kills it inside the
N-th checkpoint write of this process, after the bytes went to the temporary file and before the
rename. Figures are skipped (they take longer than the training).
"""

import argparse
import os
import signal
import sys

import pyro_cvae.runs as runs
from pyro_cvae import checkpoint
from pyro_cvae.cli import main
from pyro_cvae.infer.svi import ModuleSVI

TRAIN = ["train", "--train-size", "300", "--epochs", "4", "--batch-size", "30", "--latent-dim",
         "3", "--hidden", "24", "--eval-samples", "0", "--seed", "5", "--quiet"]  # fmt: skip
STEPS_PER_EPOCH = 10

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--resume", action="store_true")
p.add_argument("--sigkill-at-step", type=int)
p.add_argument("--sigint-at-step", type=int)
p.add_argument("--sigkill-in-write", type=int)
args = p.parse_args()

runs.write_figures = lambda *a, **k: []  # finish_run draws no figures
steps = writes = 0
step = ModuleSVI.step


def counted_step(self, *a, **k):
    global steps
    loss = step(self, *a, **k)
    steps += 1
    if steps == args.sigkill_at_step:
        os.kill(os.getpid(), signal.SIGKILL)
    if steps == args.sigint_at_step:
        os.kill(os.getpid(), signal.SIGINT)  # fit's handler sets a flag read after this step
    return loss


ModuleSVI.step = counted_step
write = checkpoint.atomic_write_bytes
fsync = os.fsync


def killing_write(path, data):
    global writes
    writes += 1
    if writes == args.sigkill_in_write:

        def die(fd):
            fsync(fd)  # the temporary file is complete; the rename has not happened
            os.kill(os.getpid(), signal.SIGKILL)

        os.fsync = die
    return write(path, data)


checkpoint.atomic_write_bytes = killing_write
sys.exit(main([*TRAIN, "--out", args.out, *(["--resume"] if args.resume else [])]))
