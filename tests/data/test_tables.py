"""Mixed-type tables as data: the row likelihood, the table schema, and every objective, prior
and the hierarchy on table rows."""

import numpy as np
import pandas as pd
import pyro.distributions as dist
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.applications import sample_rows
from pyro_cvae.data import TableSchema
from pyro_cvae.nn.likelihoods import TableLikelihood, TableRows

COLUMNS = (("continuous", 1), ("binary", 1), ("categorical", 3), ("continuous", 1))


def _frame(n=80, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(20, 60, n), "smoker": rng.choice([True, False], n),
        "city": rng.choice(["a", "b", "c"], n), "height": rng.normal(170, 10, n),
        "income": rng.choice(["low", "high"], n),
    })  # fmt: skip


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "people.csv"
    _frame().to_csv(path, index=False)
    return pc.load_dataset(path, condition="income")


def test_row_log_prob_is_the_sum_of_column_distributions():
    torch.manual_seed(0)
    out = torch.randn(2, 5, 6)  # (K, B, W)
    log_scale = torch.tensor([0.3, -0.2])
    rows = TableRows(out, log_scale, COLUMNS)
    x = rows.sample()
    assert rows.batch_shape == (2, 5) and rows.event_shape == (6,)
    cat = x[..., 2:5]
    assert torch.equal(cat.sum(-1), torch.ones(2, 5)) and set(x[..., 1].unique().tolist()) <= {0, 1}
    s = log_scale.exp()
    expected = (
        dist.Normal(out[..., 0], s[0]).log_prob(x[..., 0])
        + dist.Bernoulli(logits=out[..., 1]).log_prob(x[..., 1])
        + dist.Categorical(logits=out[..., 2:5]).log_prob(cat.argmax(-1))
        + dist.Normal(out[..., 5], s[1]).log_prob(x[..., 5])
    )
    assert torch.allclose(rows.log_prob(x), expected, atol=1e-5)
    # an observed batch (B, W) broadcasts against K particles, as in the data plate
    assert torch.allclose(rows.log_prob(x[0]), TableRows(out, log_scale, COLUMNS).log_prob(
        x[0].expand(2, 5, 6)))  # fmt: skip
    assert rows.expand((3, 2, 5)).batch_shape == (3, 2, 5)


def test_table_likelihood_learns_one_scale_per_continuous_column():
    lik = TableLikelihood(COLUMNS)
    assert lik.log_scale.shape == (2,) and lik.log_scale.requires_grad
    mean = lik.mean(torch.zeros(4, 6))
    assert torch.allclose(mean[:, 1], torch.full((4,), 0.5))
    assert torch.allclose(mean[:, 2:5].sum(-1), torch.ones(4))


def test_schema_round_trip_keeps_values_and_types(table):
    frame = _frame()
    x = table.table.encode(frame)
    back = table.table.decode(x)
    for name in ("age", "smoker", "city"):
        assert back[name].tolist() == frame[name].tolist()
    assert np.allclose(back["height"], frame["height"], atol=1e-3)
    assert back["age"].dtype == np.int64 and back["smoker"].dtype == bool
    again = TableSchema.from_dict(table.table.to_dict())
    assert again == table.table and again.layout == table.table.layout


def test_config_checks_table_columns():
    with pytest.raises(ValueError, match="likelihood 'table' needs table_columns"):
        pc.ModelConfig(image_shape=(6,), likelihood="table", num_classes=0)
    with pytest.raises(ValueError, match=r"rows of width 6 but image_shape is \(7,\)"):
        pc.ModelConfig(image_shape=(7,), likelihood="table", num_classes=0, table_columns=COLUMNS)
    with pytest.raises(ValueError, match="table_columns describe the rows of likelihood 'table'"):
        pc.ModelConfig(image_shape=(6,), num_classes=0, table_columns=COLUMNS)
    cfg = pc.ModelConfig(image_shape=(6,), likelihood="table", num_classes=0, table_columns=COLUMNS)
    assert pc.ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("objective", ["elbo", "iwae", "renyi", "dreg"])
def test_every_objective_trains_on_rows(table, objective):
    cfg = pc.ModelConfig.for_data(table, hidden_dims=(16,), latent_dim=2)
    model = pc.build_model(cfg)
    history = pc.fit(model, table, epochs=1, batch_size=16, objective=objective, particles=3,
                     progress=False)  # fmt: skip
    assert np.isfinite(history.rows[-1]["train_loss"])


@pytest.mark.parametrize("overrides", [{"prior": "vamp", "prior_options": {"pseudo_inputs": 4}},
                                       {"latent_dims": (3, 2)}])  # fmt: skip
def test_priors_and_hierarchy_work_on_rows(table, overrides):
    cfg = pc.ModelConfig.for_data(table, hidden_dims=(16,), **overrides)
    model = pc.build_model(cfg)
    pc.fit(model, table, epochs=1, batch_size=16, progress=False)
    ll = pc.log_likelihood(model, table.test.x, table.test.y, 8)
    assert ll.shape == (len(table.test),) and torch.isfinite(ll).all()


def test_log_likelihood_is_per_row(table):
    model = pc.build_model(pc.ModelConfig.for_data(table, hidden_dims=(16,), latent_dim=2))
    x, y = table.test.x, table.test.y
    torch.manual_seed(1)
    ll = pc.log_likelihood(model, x, y, 2000)
    torch.manual_seed(2)
    one = pc.log_likelihood(model, x[:1], y[:1], 2000)
    assert ll.shape == (len(x),)
    assert torch.allclose(ll[:1], one, atol=0.3)  # the same row alone: Monte Carlo noise only


def test_generated_rows_come_back_in_the_table_columns(table):
    model = pc.build_model(pc.ModelConfig.for_data(table, hidden_dims=(16,), latent_dim=2))
    rows = sample_rows(model, 7, table=table.table, schema=table.schema,
                       conditions=[{"income": "low"}, {"income": "high"}])  # fmt: skip
    assert list(rows.columns) == ["age", "smoker", "city", "height", "income"]
    assert len(rows) == 14 and rows["income"].tolist() == ["low"] * 7 + ["high"] * 7
    assert set(rows["city"]) <= {"a", "b", "c"} and set(rows["smoker"]) <= {True, False}
