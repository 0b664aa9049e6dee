"""The lean path (pyro_cvae.infer.lean) against Pyro's full trace path: same loss, same gradient."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.infer import scale_latents
from pyro_cvae.infer.lean import LeanObjective, lean_objective, qualifies
from pyro_cvae.infer.objectives import enum_objective, make_objective
from pyro_cvae.nn.priors import PRIORS

OPTIONS = {"mixture": {"components": 3}, "vamp": {"pseudo_inputs": 4}, "flow": {"layers": 2}}


def _model(kind: str, prior: str = "normal"):
    torch.manual_seed(0)
    cfg = dict(image_shape=(1, 8, 8), num_classes=10, hidden_dims=(16,), prior=prior,
               prior_options=OPTIONS.get(prior, {}))  # fmt: skip
    if kind == "hierarchical":
        return pc.HierarchicalCVAE(latent_dims=(4, 2), **cfg)
    if kind == "vae":
        return pc.CVAE(latent_dim=3, **{**cfg, "num_classes": 0})
    return pc.CVAE(latent_dim=3, **cfg)


def _loss_and_grads(model, objective, x, y, seed=1):
    model.zero_grad()
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model.model, model.guide, x, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-4)
    assert len(a[1]) == len(b[1])
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("objective, K", [("elbo", 1), ("elbo", 4), ("iwae", 1), ("iwae", 5),
                                          ("renyi", 3)])  # fmt: skip
@pytest.mark.parametrize("kind", ["cvae", "hierarchical", "vae"])
def test_same_loss_and_gradient_as_the_full_path(kind, objective, K, digits_small):
    model = _model(kind)
    x, y = digits_small.train.x[:24], digits_small.train.y[:24]
    y = y if model.config.cond_width else None
    lean = LeanObjective(make_objective(objective, K, 0.5))
    full = _loss_and_grads(model, make_objective(objective, K, 0.5), x, y)
    ours = _loss_and_grads(model, lean, x, y)
    assert lean.active, lean.reason
    _assert_same(full, ours)


@pytest.mark.parametrize("prior", list(PRIORS))
def test_every_prior(prior, digits_small):
    model = _model("cvae", prior)
    x, y = digits_small.train.x[:24], digits_small.train.y[:24]
    for objective, K in (("elbo", 2), ("iwae", 3)):
        lean = LeanObjective(make_objective(objective, K))
        _assert_same(_loss_and_grads(model, make_objective(objective, K), x, y),
                     _loss_and_grads(model, lean, x, y))  # fmt: skip
        assert lean.active, lean.reason


def test_kl_weight_is_honoured_and_refused_inside_a_bound(digits_small):
    model = _model("hierarchical")
    x, y = digits_small.train.x[:24], digits_small.train.y[:24]
    with scale_latents(0.3, model.latent_sites):
        full = _loss_and_grads(model, make_objective("elbo", 2), x, y)
        ours = _loss_and_grads(model, LeanObjective(make_objective("elbo", 2)), x, y)
    _assert_same(full, ours)
    lean = LeanObjective(make_objective("iwae", 2))
    with scale_latents(0.3, model.latent_sites), pytest.raises(ValueError, match="KL weight"):
        lean.differentiable_loss(model.model, model.guide, x, y)


def test_a_site_outside_the_data_plate_falls_back_to_the_full_path():
    def model(x, y=None):
        s = pyro.sample("s", dist.Normal(0.0, 1.0))  # a global latent
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(s, 1.0).expand([x.shape[0]]), obs=x)

    loc = torch.nn.Parameter(torch.tensor(0.3))

    def guide(x, y=None):
        pyro.sample("s", dist.Normal(loc, 1.0))

    x = torch.randn(5)
    reason = qualifies(model, guide, x)
    assert reason is not None and "'s'" in reason
    lean = LeanObjective(make_objective("elbo"))
    losses = []
    for obj in (make_objective("elbo"), lean):
        pyro.set_rng_seed(2)
        losses.append(obj.differentiable_loss(model, guide, x).item())
    assert losses[0] == losses[1] and not lean.active


def test_objectives_without_a_lean_path_are_left_alone():
    for name in ("meanfield", "tracegraph", "dreg"):
        obj = make_objective(name, 2)
        assert lean_objective(obj) is obj
    enum = enum_objective()
    assert lean_objective(enum) is enum
    with pytest.raises(ValueError, match="no lean path for TraceEnum_ELBO"):
        LeanObjective(enum)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_fit_on_the_lean_path_matches_the_full_path(objective, digits_small):
    runs = []
    for lean in (True, False):
        model = _model("cvae")
        pyro.set_rng_seed(0)
        h = pc.fit(model, digits_small, epochs=2, batch_size=50, objective=objective,
                   particles=3 if objective == "iwae" else 1, lean=lean, progress=False,
                   pyro_validation=False)  # fmt: skip
        runs.append((h.column("train_loss"), [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- M2 (semi-supervised)


def _m2():
    torch.manual_seed(0)
    return pc.M2(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(16,))


@pytest.mark.parametrize("K", [1, 3])
def test_m2_label_log_weights_equal_the_full_path(K, digits_small):
    from pyro_cvae.infer.semisupervised import label_log_weights

    model, x = _m2(), digits_small.train.x[:12]
    out = []
    for lean in (False, True):
        pyro.set_rng_seed(4)
        out.append(label_log_weights(model, x, K, lean=lean))
    assert out[0].shape == (K, 10, 12)
    torch.testing.assert_close(out[0], out[1], rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("kind, K", [("elbo", 1), ("elbo", 2), ("iwae", 3)])
def test_m2_objective_on_the_lean_path(kind, K, digits_small):
    from pyro_cvae.infer.semisupervised import (
        SemiSupervisedObjective,
        enumerated_elbo,
        label_log_weights,
    )

    model = _m2()
    x_l, y_l, x_u = digits_small.train.x[:8], digits_small.train.y[:8], digits_small.train.x[8:20]
    full, lean = SemiSupervisedObjective(kind, K), SemiSupervisedObjective(kind, K, lean=True)
    # labelled images: nothing to enumerate, the same draws on both paths
    pyro.set_rng_seed(5)
    a = full.labelled(model, x_l, y_l)
    pyro.set_rng_seed(5)
    b = lean.labelled(model, x_l, y_l)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-4)
    # unlabelled: the lean enumerated ELBO is enumerated_elbo of the label log weights
    pyro.set_rng_seed(6)
    ours = lean.unlabelled(model, x_u)
    pyro.set_rng_seed(6)
    log_w = label_log_weights(model, x_u, K)
    if kind == "elbo":
        torch.testing.assert_close(ours, -enumerated_elbo(log_w, model.classifier(x_u)).sum())
    else:
        pyro.set_rng_seed(6)
        torch.testing.assert_close(ours, full.unlabelled(model, x_u), rtol=1e-6, atol=1e-4)


def test_m2_lean_enumerated_elbo_matches_trace_enum_in_expectation(digits_small):
    """Same estimator as TraceEnum_ELBO, other draws: the means over many draws agree."""
    from pyro_cvae.infer.semisupervised import SemiSupervisedObjective

    model, x_u = _m2(), digits_small.train.x[:6]
    full, lean = SemiSupervisedObjective("elbo"), SemiSupervisedObjective("elbo", lean=True)
    # 300 independent draws of the 6 images' loss on each path, 10 to a call: z is drawn per
    # image, so a call on the images repeated 10 times sums 10 independent draws (the standard
    # error of the difference of the means is that of 300 single draws, as one draw per call)
    reps, calls = 10, 30
    x_rep = x_u.repeat(reps, 1, 1, 1)
    draws = {k: torch.stack([o.unlabelled(model, x_rep).detach() / reps for _ in range(calls)])
             for k, o in (("full", full), ("lean", lean))}  # fmt: skip
    diff = draws["full"].mean() - draws["lean"].mean()
    se = ((draws["full"].var() + draws["lean"].var()) / calls).sqrt()
    assert diff.abs() < 4 * se


def test_m2_trains_on_the_lean_path(digits_small):
    model = _m2()
    cfg = pc.SemiSupervisedConfig(num_labels=50, batch_size=50, labelled_batch_size=20)
    h = pc.fit(model, digits_small, cfg, epochs=3, lr=3e-3, progress=False, pyro_validation=False)
    losses = h.column("train_loss")
    assert losses[-1] < losses[0]


def test_m2_loss_value_works_without_gradients(digits_small):
    """SemiSupervisedObjective.loss under torch.no_grad (TraceEnum_ELBO alone refuses it)."""
    from pyro_cvae.infer.semisupervised import SemiSupervisedObjective

    model = _m2()
    x_l, y_l, x_u = digits_small.train.x[:8], digits_small.train.y[:8], digits_small.train.x[8:20]
    args = (x_l, y_l, x_u, (0.5, 0.25, 0.1))
    objective = SemiSupervisedObjective("elbo")
    with torch.no_grad():
        pyro.set_rng_seed(7)
        value = objective.loss(model, None, *args)
    pyro.set_rng_seed(7)
    same = SemiSupervisedObjective("elbo", lean=True).differentiable_loss(model, None, *args)
    assert value == pytest.approx(same.item(), rel=1e-6)
