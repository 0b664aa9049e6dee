"""Run by test_families.py under torchrun: trains an M2 (semi-supervised family) on two ranks."""

import sys

import pyro
import torch

import pyro_cvae as pc

out = sys.argv[1]
pyro.set_rng_seed(0)
data = pc.load_dataset("digits").subset(200, 50)
model = pc.M2(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(16,))
config = pc.SemiSupervisedConfig(epochs=3, batch_size=25, labelled_batch_size=10, num_labels=50,
                                 lr=3e-3)  # fmt: skip
seen = []
real_step = pc.infer.ModuleSVI.step


def counting_step(self, x_l, y_l, x_u, weights):
    seen.append(x_u.sum().item())  # which unlabelled images this rank received
    return real_step(self, x_l, y_l, x_u, weights)


pc.infer.ModuleSVI.step = counting_step
history = pc.fit(model, data, config, progress=False, out=out + "/run")
rank = torch.distributed.get_rank()
torch.save({"state": model.state_dict(), "loss": history.column("train_loss"), "seen": seen},
           f"{out}/rank{rank}.pt")  # fmt: skip
