r"""Metrics of generated molecules: validity, uniqueness, novelty, diversity, property control,
and the per-molecule likelihood.

The definitions are MOSES's [1], computed with RDKit:

* **validity**: the share of generated strings RDKit parses into a molecule with atoms;
* **unique@k**: the share of distinct canonical SMILES among the first k valid ones;
* **novelty**: the share of distinct valid molecules not in the training set;
* **internal diversity** (IntDiv1): one minus the mean Tanimoto similarity of Morgan
  fingerprints (radius 2, 1024 bits) over pairs of generated molecules;
* **property control**: for requested properties, the mean absolute error and Spearman's rank
  correlation between requested and achieved values (Lim et al. [2]).

References:
    [1] Polykovskiy et al., Molecular Sets (MOSES): a benchmarking platform for molecular
        generation models, Frontiers in Pharmacology 2020.
    [2] Lim et al., Molecular generative model based on conditional variational autoencoder for
        de novo molecular design, Journal of Cheminformatics 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from ..data import AttributeSchema, Dataset
from ..data.molecules import (
    PROPERTIES,
    _require,
    canonical_smiles,
    molecule_properties,
    split_smiles,
)
from .bounds import elbo_per_image
from .likelihood import DEFAULT_MAX_FLOATS, log_likelihood

__all__ = [
    "generate_molecules",
    "molecule_metrics",
    "property_control",
    "molecule_nll",
    "evaluate_molecules",
]


@torch.no_grad()
def generate_molecules(
    model,
    schema: AttributeSchema | None,
    conditions: Sequence[dict] | None,
    num_samples: int,
    *,
    temperature: float = 1.0,
    progress: bool = False,
) -> list[dict]:
    """Sample ``num_samples`` molecules per condition and compute their properties.

    Args:
        model: a :class:`~pyro_cvae.models.MoleculeCVAE`.
        schema: the property schema of its run (``None`` for an unconditional model).
        conditions: property dicts such as ``{"logp": 2.5, "qed": 0.8}`` (unnamed properties
            take the schema's default); ``None`` for an unconditional model.

    Returns:
        one row per molecule: ``condition`` (its index), ``requested_<name>`` for each property,
        ``smiles`` (canonical; the raw decoded string when invalid), ``valid`` and the RDKit
        properties of valid molecules (NaN otherwise).
    """
    if conditions is None:
        ids = model.sample(None, num_samples, temperature=temperature)[None]
        requested: list[dict] = [{}]
    else:
        requested = [schema.complete(c) for c in conditions]
        c = schema.encode(requested).to(model.device)
        ids = model.sample(c, num_samples, temperature=temperature)  # (M, n, L)
    raw = model.smiles(ids)
    canon = [canonical_smiles(s) for s in raw]
    props = molecule_properties([s or "" for s in canon], progress=progress)
    rows = []
    for i, (r, s) in enumerate(zip(raw, canon)):
        m = i // num_samples
        row = {"condition": m}
        row.update({f"requested_{k}": v for k, v in requested[m].items()})
        row.update(smiles=s if s is not None else r, valid=s is not None)
        row.update({name: float(props[i, j]) for j, name in enumerate(PROPERTIES)})
        rows.append(row)
    return rows


def _fingerprints(smiles: Sequence[str]):
    Chem = _require("rdkit.Chem")
    rdFingerprintGenerator = _require("rdkit.Chem.rdFingerprintGenerator")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]


def internal_diversity(smiles: Sequence[str], max_molecules: int = 1000) -> float:
    """IntDiv1: 1 - mean pairwise Tanimoto similarity of Morgan fingerprints (the first
    ``max_molecules`` distinct valid molecules; NaN for fewer than two)."""
    DataStructs = _require("rdkit.DataStructs")
    fps = _fingerprints(list(smiles)[:max_molecules])
    if len(fps) < 2:
        return float("nan")
    total, count = 0.0, 0
    for i, fp in enumerate(fps):
        sims = DataStructs.BulkTanimotoSimilarity(fp, fps)
        total += sum(sims) - sims[i]
        count += len(fps) - 1
    return 1.0 - total / count


def molecule_metrics(
    smiles: Sequence[str | None], train_smiles: Sequence[str], *, ks: Sequence[int] = (1000, 10000)
) -> dict:
    """Validity, unique@k (for each k not above the number of valid molecules, and over all of
    them), novelty and internal diversity of generated molecules (canonical SMILES, ``None`` or
    an unparsable string for an invalid one)."""
    canon = [canonical_smiles(s) if s else None for s in smiles]
    valid = [s for s in canon if s is not None]
    out: dict = {"generated": len(canon), "validity": len(valid) / max(len(canon), 1)}
    for k in ks:
        if len(valid) >= k:
            out[f"unique@{k}"] = len(set(valid[:k])) / k
    distinct = sorted(set(valid))
    out["uniqueness"] = len(distinct) / max(len(valid), 1)
    train = set(train_smiles)
    out["novelty"] = (
        sum(s not in train for s in distinct) / len(distinct) if distinct else float("nan")
    )
    out["internal_diversity"] = internal_diversity(distinct)
    return out


def property_control(rows: Sequence[dict], names: Sequence[str]) -> dict:
    """Mean absolute error and Spearman correlation between requested and achieved properties
    over the valid molecules of :func:`generate_molecules` rows, per property in ``names``."""
    out = {}
    for name in names:
        pairs = np.array(
            [(r[f"requested_{name}"], r[name]) for r in rows
             if r["valid"] and f"requested_{name}" in r and math.isfinite(r[name])]
        )  # fmt: skip
        if len(pairs) < 2:
            continue
        out[f"{name}_mae"] = float(np.abs(pairs[:, 0] - pairs[:, 1]).mean())
        rho = spearmanr(pairs[:, 0], pairs[:, 1]).statistic if np.ptp(pairs[:, 0]) > 0 else np.nan
        out[f"{name}_spearman"] = float(rho)
    return out


@torch.no_grad()
def molecule_nll(
    model, x: torch.Tensor, y: torch.Tensor | None, num_samples: int = 100, **kw
) -> torch.Tensor:
    r"""Importance-sampled :math:`-\log p(x | c)` of each molecule in nats, shape (N,).

    :func:`~pyro_cvae.evaluate.log_likelihood` with its memory budget counted in logits (a
    molecule's decoder output is L x V floats, not L)."""
    kw.setdefault("max_floats", max(1, DEFAULT_MAX_FLOATS // model.config.vocab_size))
    return -log_likelihood(model, x, y, num_samples, **kw)


@torch.no_grad()
def evaluate_molecules(
    model, data: Dataset, *, num_samples: int = 100, num_generated: int = 1000,
    max_test: int | None = 1000,
) -> dict:  # fmt: skip
    """Test metrics of a trained molecule model: ELBO and importance-sampled NLL per molecule
    (K = ``num_samples``), and the MOSES metrics of ``num_generated`` molecules generated for
    the test set's own properties (validity, uniqueness, novelty, diversity, control)."""
    test = data.eval_split("test")
    if max_test is not None:
        test = test.subset(max_test)
    y = test.y if model.config.condition_dim else None
    out: dict = {"test_molecules": len(test)}
    out["test_elbo"] = elbo_per_image(model, test, batch_size=200).mean().item()
    out["test_nll"] = molecule_nll(model, test.x, y, num_samples).mean().item()
    out["num_samples"] = num_samples
    n = min(num_generated, len(test))
    if model.config.condition_dim:
        ids = model.sample(test.y[:n], 1)[:, 0]  # one molecule per test condition
        requested = data.schema.decode(test.y[:n].cpu())
    else:
        ids, requested = model.sample(None, n), None
    smiles = model.smiles(ids)
    out.update(molecule_metrics(smiles, split_smiles(data, "train"), ks=(1000,)))
    if requested is not None:
        canon = [canonical_smiles(s) for s in smiles]
        props = molecule_properties([s or "" for s in canon], progress=False)
        names = [a.name for a in data.schema.attributes]
        rows = [
            {"valid": c is not None, **{f"requested_{k}": v for k, v in req.items()},
             **dict(zip(names, p.tolist()))}
            for c, req, p in zip(canon, requested, props)
        ]  # fmt: skip
        out.update(property_control(rows, names))
    return out
