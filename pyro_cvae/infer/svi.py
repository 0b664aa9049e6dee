"""One optimisation step of stochastic variational inference, with the parameters in modules.

:class:`ModuleSVI` is ``pyro.infer.SVI`` with one ``torch.optim`` optimizer over a module's
parameters instead of ``pyro.optim``'s one optimizer per parameter and the global parameter
store. Any objective with ``differentiable_loss(model, guide, *args)`` works: Pyro's ELBOs, the
importance-weighted bounds of :mod:`pyro_cvae.infer.objectives`, the semi-supervised objective.
It knows nothing of data, epochs or files; :func:`pyro_cvae.fit` drives it.
"""

from __future__ import annotations

import math
import warnings

import torch
from pyro.infer import SVI
from torch import nn

__all__ = ["ModuleSVI", "NonFiniteLossError", "ObjectiveModule", "make_adam"]


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN or infinite during training."""


def make_adam(params, lr: float, eps: float = 1e-8, beta1: float = 0.9) -> torch.optim.Adam:
    """Adam over all parameters as one fused kernel (10x faster per step than per-tensor);
    ``beta1`` is the decay of its first moment (torch's 0.9; Pyro's SS-VAE tutorial 0.95), the
    second moment's stays torch's 0.999."""
    params, betas = list(params), (beta1, 0.999)
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without a fused kernel
        return torch.optim.Adam(params, lr=lr, eps=eps, betas=betas, foreach=True)


class ModuleSVI(SVI):
    """Stochastic variational inference with module-local parameters and one torch optimizer.

    ``step`` computes ``loss.differentiable_loss(model, guide, *args)``, checks that loss and
    gradients are finite (raising :class:`NonFiniteLossError` *before* any parameter changes),
    steps the optimizer and clears the gradients.
    """

    def __init__(self, model, guide, optim: torch.optim.Optimizer, loss, params, loss_fn=None):
        # SVI.__init__ insists on a PyroOptim (one optimizer per parameter, found through the
        # global parameter store); the attributes it would set are set here instead.
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.params = [p for p in params if p.requires_grad]
        self._ones: dict[torch.device, torch.Tensor] = {}  # the unit scale of the finite check
        # a module whose forward returns the loss (an ObjectiveModule, or DistributedDataParallel
        # around one, which averages the gradients over processes in backward)
        self.loss_fn = loss_fn

    def step(self, *args, **kwargs) -> float:
        with warnings.catch_warnings():
            # Pyro warns "Encountered NaN"; we raise NonFiniteLossError with the context instead
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            if self.loss_fn is not None:
                loss = self.loss_fn(*args, **kwargs)
            else:
                loss = self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
        loss.backward()  # a non-finite loss gives non-finite gradients: cleared below, unused
        # Under DDP the gradients are averaged over processes, so a non-finite loss anywhere
        # makes every process see non-finite gradients, and all of them stop or skip together.
        bad = self._nonfinite_grads(loss.device)
        if loss.device.type == "cpu":  # no transfer to wait for: two reads, no stacking
            value, bad_grads = loss.item(), bad.item()
        else:  # one device-to-host transfer: the loss and the gradients' finiteness together
            value, bad_grads = torch.stack([loss.detach().double(), bad.double()]).tolist()
        if not math.isfinite(value):
            self.optim.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"the loss is {value}")
        if bad_grads:
            self.optim.zero_grad(set_to_none=True)
            raise NonFiniteLossError("a gradient is not finite")
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return value

    @torch.no_grad()
    def _nonfinite_grads(self, device: torch.device) -> torch.Tensor:
        """1.0 if any gradient is NaN or infinite, else 0.0, as a tensor on ``device`` (no
        synchronisation): one fused pass per device and dtype (the check GradScaler uses, with a
        scale of exactly 1), half the cost of a norm per tensor."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=device)
        where, dtype = grads[0].device, grads[0].dtype
        if all(g.device == where and g.dtype == dtype for g in grads):  # the usual case
            return self._found_nonfinite(grads, where).to(device)
        groups: dict[tuple, list[torch.Tensor]] = {}
        for g in grads:
            groups.setdefault((g.device, g.dtype), []).append(g)
        found = torch.zeros((), device=device)
        for (where, _), group in groups.items():
            found = torch.maximum(found, self._found_nonfinite(group, where).to(device))
        return found

    def _found_nonfinite(self, grads: list[torch.Tensor], where: torch.device) -> torch.Tensor:
        one = self._ones.get(where)
        if one is None:  # made once per device, not once per step
            one = self._ones[where] = torch.ones((), device=where)
        found = torch.zeros((), device=where)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
        return found

    @torch.no_grad()
    def evaluate_loss(self, *args, **kwargs) -> float:
        return self.loss.loss(self.model, self.guide, *args, **kwargs)


class ObjectiveModule(nn.Module):
    """A model and its objective as one module whose ``forward`` returns the loss.

    The shape ``torch.nn.parallel.DistributedDataParallel`` wraps (as Pyro's ``ELBO.__call__``
    returns an ``ELBOModule``): DDP arms its gradient all-reduce in ``forward``, which a Pyro
    objective calling ``model.model`` / ``model.guide`` directly would bypass.

    Args:
        net: the model (a ``PyroModule``); its parameters are this module's.
        objective: anything with ``differentiable_loss(model_fn, guide_fn, *args)``.
        model_fn, guide_fn: what the objective receives (``net.model``, ``net.guide``).
    """

    def __init__(self, net: nn.Module, objective, model_fn, guide_fn):
        super().__init__()
        self.net = net
        self.objective, self.model_fn, self.guide_fn = objective, model_fn, guide_fn

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.objective.differentiable_loss(self.model_fn, self.guide_fn, *args, **kwargs)
