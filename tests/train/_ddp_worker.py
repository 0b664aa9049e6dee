"""Run by test_distributed.py under torchrun: trains on digits and saves this rank's weights,
losses and the grey images of each step's batch (recorded before dynamic binarisation)."""

import sys

import pyro
import torch

import pyro_cvae as pc
from pyro_cvae.data import core

seen = []  # one (B, 1, 8, 8) tensor per training step of this rank
draw = core.binarize_draw


def recording_draw(x, *a, **k):
    seen.append(x.clone())
    return draw(x, *a, **k)


core.binarize_draw = recording_draw
out = sys.argv[1]
pyro.set_rng_seed(0)
data = pc.load_dataset("digits").subset(200, 100)
model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(32,))
history = pc.fit(model, data, epochs=2, batch_size=25, lr=3e-3, progress=False, out=out + "/run")
rank = torch.distributed.get_rank()
torch.save({"state": model.state_dict(), "loss": history.column("train_loss"), "seen": seen},
           f"{out}/rank{rank}.pt")  # fmt: skip
