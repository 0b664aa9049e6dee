"""Run by test_callbacks.py under torchrun: every rank passes a callback that stops after epoch 2;
saves which epochs this rank's callback saw, the epochs trained and the weights."""

import sys

import pyro
import torch

import pyro_cvae as pc
from pyro_cvae.train.callbacks import STOP

out = sys.argv[1]
calls = []


class StopAt(pc.Callback):
    def on_epoch_end(self, row):
        calls.append(row["epoch"])
        return STOP if row["epoch"] == 2 else None


pyro.set_rng_seed(0)
data = pc.load_dataset("digits").subset(100, 50)
model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(16,))
history = pc.fit(model, data, epochs=4, batch_size=25, lr=3e-3, progress=False,
                 out=out + "/run", callbacks=[StopAt()])  # fmt: skip
rank = torch.distributed.get_rank()
torch.save({"state": model.state_dict(), "epochs": len(history), "stopped_by": history.stopped_by,
            "calls": calls}, f"{out}/rank{rank}.pt")  # fmt: skip
