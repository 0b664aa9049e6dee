"""Run by test_distributed.py under torchrun: trains on digits and saves this rank's weights."""

import sys

import pyro
import torch

import pyro_cvae as pc

out = sys.argv[1]
pyro.set_rng_seed(0)
data = pc.load_dataset("digits").subset(400, 100)
model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(32,))
history = pc.fit(model, data, epochs=4, batch_size=25, lr=3e-3, progress=False, out=out + "/run")
rank = torch.distributed.get_rank()
torch.save({"state": model.state_dict(), "loss": history.column("train_loss")},
           f"{out}/rank{rank}.pt")  # fmt: skip
