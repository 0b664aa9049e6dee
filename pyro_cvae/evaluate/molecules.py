r"""Metrics of generated molecules: validity, uniqueness, novelty, diversity, property control,
and the per-molecule likelihood.

The definitions are MOSES's [1], computed with RDKit:

* **validity**: the share of generated strings RDKit parses into a molecule with atoms;
* **unique@k**: the share of distinct canonical SMILES among the first k valid ones;
* **novelty**: the share of distinct valid molecules not in the training set;
* **internal diversity** (IntDiv1): one minus the mean Tanimoto similarity of Morgan
  fingerprints (radius 2, 1024 bits) over pairs of generated molecules;
* **MOSES's distribution metrics** (:func:`moses_metrics`, the keys of MOSES's
  ``get_all_metrics``), against a reference set R (MOSES's test set by default, from the
  statistics it ships) for the valid generated molecules G:

  - ``FCD/Test``, the Fréchet ChemNet Distance [3]: ChemNet's penultimate activations of G and
    R as Gaussians, :math:`\lVert\mu_G - \mu_R\rVert^2 + \operatorname{tr}(\Sigma_G +
    \Sigma_R - 2 (\Sigma_G \Sigma_R)^{1/2})` (``fcd_torch``; 0 for identical sets);
  - ``SNN/Test``: the mean over g in G of :math:`\max_{r \in R} T(g, r)`, T the Tanimoto
    similarity of Morgan fingerprints (radius 2, 1024 bits);
  - ``Frag/Test`` and ``Scaf/Test``: the cosine similarity of the count vectors of BRICS
    fragments, and of Bemis-Murcko scaffolds with at least two rings, of G and R;
  - ``IntDiv`` and ``IntDiv2``: :math:`1 - \frac1{|G|} \sum_{g} (\frac1{|G|} \sum_{g'}
    T(g, g')^p)^{1/p}` for p = 1, 2, over all ordered pairs (each molecule with itself too);
  - ``Novelty``: the share of distinct valid molecules not among all 1.6M MOSES training
    molecules.
* **property control**: for requested properties, the mean absolute error and Spearman's rank
  correlation between requested and achieved values (Lim et al. [2]).

References:
    [1] Polykovskiy et al., Molecular Sets (MOSES): a benchmarking platform for molecular
        generation models, Frontiers in Pharmacology 2020.
    [3] Preuer et al., Fréchet ChemNet Distance: a metric for generative models for molecules
        in drug discovery, Journal of Chemical Information and Modeling 2018.
    [2] Lim et al., Molecular generative model based on conditional variational autoencoder for
        de novo molecular design, Journal of Cheminformatics 2018.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
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
    moses_file,
    moses_statistics,
    read_smiles_csv,
    split_smiles,
)
from .bounds import elbo_per_image
from .likelihood import DEFAULT_MAX_FLOATS, log_likelihood

__all__ = [
    "generate_molecules",
    "molecule_metrics",
    "moses_metrics",
    "reference_statistics",
    "fcd",
    "frechet_distance",
    "snn",
    "fragment_similarity",
    "scaffold_similarity",
    "moses_internal_diversity",
    "fragments",
    "scaffolds",
    "property_control",
    "PROPERTY_TOLERANCES",
    "control_on_requests",
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
    extrapolate: bool = False,
) -> list[dict]:
    """Sample ``num_samples`` molecules per condition and compute their properties.

    Args:
        model: a :class:`~pyro_cvae.models.MoleculeCVAE`.
        schema: the property schema of its run (``None`` for an unconditional model).
        conditions: property dicts such as ``{"logp": 2.5, "qed": 0.8}`` (unnamed properties
            take the schema's default); ``None`` for an unconditional model.
        extrapolate: take property values outside the training range (encoded beyond [0, 1])
            instead of refusing them: what the model makes of a request it never saw.

    Returns:
        one row per molecule: ``condition`` (its index), ``requested_<name>`` for each property,
        ``smiles`` (canonical; the raw decoded string when invalid), ``valid`` and the RDKit
        properties of valid molecules (NaN otherwise).
    """
    if conditions is None:
        ids = model.sample(None, num_samples, temperature=temperature)[None]
        requested: list[dict] = [{}]
    else:
        requested = [schema.complete(c, extrapolate=extrapolate) for c in conditions]
        c = schema.encode(requested, extrapolate=extrapolate).to(model.device)
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


def _mols(smiles: Sequence[str]):
    Chem = _require("rdkit.Chem")
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    bad = [s for s, m in zip(smiles, mols) if m is None]
    if bad:
        raise ValueError(
            f"{len(bad)} SMILES do not parse (e.g. {bad[0]!r}); pass valid molecules only, as "
            "moses_metrics does"
        )
    return mols


def _fingerprint_matrix(smiles: Sequence[str]) -> np.ndarray:
    """Morgan fingerprints (radius 2, 1024 bits) as a (N, 1024) uint8 matrix (MOSES's)."""
    rdFingerprintGenerator = _require("rdkit.Chem.rdFingerprintGenerator")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [gen.GetFingerprintAsNumPy(m) for m in _mols(smiles)]
    return np.array(fps, dtype=np.uint8).reshape(len(fps), 1024)


def _tanimoto_agg(ref: np.ndarray, gen: np.ndarray, agg: str, p: int = 1,
                  batch: int = 4096) -> np.ndarray:  # fmt: skip
    """For each row of ``gen`` (N, F) the max (``agg="max"``) or the power mean of order p
    (``"mean"``) of its Tanimoto similarities to the rows of ``ref`` (M, F): shape (N,).
    Two empty fingerprints count as identical (similarity 1), as in MOSES."""
    out = np.zeros(len(gen))
    for i in range(0, len(gen), batch):
        g = torch.as_tensor(gen[i : i + batch], dtype=torch.float32)  # (b, F)
        acc = torch.zeros(len(g), dtype=torch.float64)
        for j in range(0, len(ref), batch):
            r = torch.as_tensor(ref[j : j + batch], dtype=torch.float32)  # (m, F)
            both = (g @ r.T).double()  # (b, m) bits set in both: exact counts in float32
            sim = both / (g.sum(1, keepdim=True).double() + r.sum(1).double() - both)
            sim = torch.nan_to_num(sim, nan=1.0)
            if agg == "max":
                acc = torch.maximum(acc, sim.max(1).values)
            else:
                acc += (sim**p).sum(1)
        out[i : i + batch] = acc.numpy() if agg == "max" else (acc / len(ref)).numpy() ** (1 / p)
    return out


def snn(smiles: Sequence[str], reference_fps: np.ndarray) -> float:
    """SNN: the mean over the molecules of their largest Tanimoto similarity to a reference
    set, given as its Morgan fingerprint matrix (M, 1024) (:func:`reference_statistics`)."""
    if not len(smiles):
        return float("nan")
    return float(_tanimoto_agg(reference_fps, _fingerprint_matrix(smiles), "max").mean())


def moses_internal_diversity(smiles: Sequence[str], p: int = 1) -> float:
    r"""MOSES's IntDiv (p = 1) and IntDiv2 (p = 2): :math:`1 - \frac1{|G|} \sum_g (\frac1{|G|}
    \sum_{g'} T(g, g')^p)^{1/p}` over all ordered pairs of ``smiles``, each with itself too and
    duplicates kept (unlike :func:`internal_diversity`)."""
    if not len(smiles):
        return float("nan")
    fps = _fingerprint_matrix(smiles)
    return float(1 - _tanimoto_agg(fps, fps, "mean", p).mean())


def _cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return float("nan")
    keys = set(a) | set(b)
    u = np.array([a.get(k, 0) for k in keys], dtype=float)
    v = np.array([b.get(k, 0) for k in keys], dtype=float)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def fragments(smiles: Sequence[str]) -> Counter:
    """Counts of the BRICS fragments (SMILES with dummy atoms) of the molecules."""
    Chem = _require("rdkit.Chem")
    out: Counter = Counter()
    for mol in _mols(smiles):
        out.update(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split("."))
    return out


def scaffolds(smiles: Sequence[str], min_rings: int = 2) -> Counter:
    """Counts of the Bemis-Murcko scaffolds with at least ``min_rings`` rings (MOSES's 2)."""
    Chem = _require("rdkit.Chem")
    MurckoScaffold = _require("rdkit.Chem.Scaffolds.MurckoScaffold")
    out: Counter = Counter()
    for mol in _mols(smiles):
        try:
            scaffold = MurckoScaffold.GetScaffoldForMol(mol)
        except (ValueError, RuntimeError):
            continue
        text = Chem.MolToSmiles(scaffold)
        if text and scaffold.GetRingInfo().NumRings() >= min_rings:
            out[text] += 1
    return out


def fragment_similarity(smiles: Sequence[str], reference: Counter) -> float:
    """Frag: cosine similarity of the BRICS fragment counts of the molecules and a reference's
    (:func:`reference_statistics`' ``"Frag"``); NaN when either has none."""
    return _cosine(reference, fragments(smiles))


def scaffold_similarity(smiles: Sequence[str], reference: Counter) -> float:
    """Scaf: cosine similarity of the scaffold counts (two rings or more) of the molecules and
    a reference's (:func:`reference_statistics`' ``"Scaf"``); NaN when either has none."""
    return _cosine(reference, scaffolds(smiles))


@functools.lru_cache(maxsize=1)
def _chemnet(device: str, batch_size: int):
    try:
        from fcd_torch import FCD
    except ImportError:
        raise ImportError(
            "the Fréchet ChemNet Distance needs the optional package 'fcd-torch' (it ships "
            "ChemNet's weights); install it with `pip install 'pyro_cvae[molecules]'` (or "
            "`pip install --no-deps fcd-torch`)"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fcd_torch's torch.load and numpy calls of 2019
        return FCD(device=device, n_jobs=1, batch_size=batch_size)


def _chemnet_stats(smiles: Sequence[str], device: str = "cpu", batch_size: int = 512) -> dict:
    if len(smiles) < 2:
        raise ValueError(f"the FCD needs at least 2 molecules, got {len(smiles)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.row_stack inside fcd_torch
        return _chemnet(device, batch_size).precalc(list(smiles))


def fcd(smiles: Sequence[str], reference: dict, *, device: str = "cpu",
        batch_size: int = 512) -> float:  # fmt: skip
    """The Fréchet ChemNet Distance between valid molecules (at least 2) and a reference's
    ChemNet statistics ``{"mu": (512,), "sigma": (512, 512)}`` (:func:`reference_statistics`'
    ``"FCD"``, or MOSES's test set's)."""
    mine = _chemnet_stats(smiles, device, batch_size)
    return frechet_distance(mine["mu"], mine["sigma"], reference["mu"], reference["sigma"])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    r"""The Fréchet distance of two Gaussians, :math:`\lVert\mu_1 - \mu_2\rVert^2 +
    \operatorname{tr}(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2})` (``fcd_torch``'s
    formula: ``eps`` on the diagonals when the product's square root is not finite; the
    numerical imaginary part of the square root is dropped)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"the two Gaussians differ in size: means {mu1.shape} and {mu2.shape}, covariances "
            f"{sigma1.shape} and {sigma2.shape}"
        )
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def reference_statistics(smiles: Sequence[str] | None = None, *, device: str = "cpu") -> dict:
    """The statistics :func:`moses_metrics` compares against: for ``smiles`` (valid molecules)
    their ChemNet mean and covariance (``"FCD"``), Morgan fingerprints (``"SNN"``), fragment
    and scaffold counts (``"Frag"``, ``"Scaf"``); ``None`` reads MOSES's own for its test set
    (176,074 molecules; :func:`~pyro_cvae.data.molecules.moses_statistics`, read once per
    process and shared: do not modify it)."""
    if smiles is None:
        return _moses_test_statistics()
    smiles = list(smiles)
    return {"FCD": _chemnet_stats(smiles, device), "SNN": {"fps": _fingerprint_matrix(smiles)},
            "Frag": {"frag": fragments(smiles)}, "Scaf": {"scaf": scaffolds(smiles)}}  # fmt: skip


@functools.lru_cache(maxsize=1)
def _moses_test_statistics() -> dict:
    """MOSES's test statistics, read once per process (about 200 MB; seconds to unpickle):
    shared between calls, so callers must not modify them."""
    return moses_statistics("test")


@functools.lru_cache(maxsize=1)
def _moses_train() -> frozenset:
    return frozenset(read_smiles_csv(moses_file("train")))


def moses_metrics(
    smiles: Sequence[str | None],
    *,
    reference: dict | None = None,
    train_smiles: Sequence[str] | None = None,
    ks: Sequence[int] = (1000, 10000),
    device: str = "cpu",
) -> dict:
    """MOSES's metrics of generated molecules, under the keys of MOSES's ``get_all_metrics``:
    ``valid``, ``unique@k`` (each k not above the number of valid molecules), ``FCD/Test``,
    ``SNN/Test``, ``Frag/Test``, ``Scaf/Test``, ``IntDiv``, ``IntDiv2`` and ``Novelty``.

    Args:
        smiles: generated strings, ``None`` or unparsable for an invalid molecule.
        reference: :func:`reference_statistics` of a reference set; ``None``: MOSES's test set
            (its shipped statistics, so the numbers compare with MOSES's tables).
        train_smiles: the training molecules for novelty; ``None``: all of MOSES's training set.
        ks: the k of unique@k (MOSES: 1,000 and 10,000; it recommends 30,000 samples).
        device: where ChemNet runs.

    Every metric but validity is computed on the valid molecules, duplicates kept, as MOSES
    does; an empty valid set gives NaN. SNN compares each molecule with every reference
    fingerprint: for MOSES's test set about 3 s per 1,000 molecules on one CPU thread.
    """
    canon = [canonical_smiles(s) if s else None for s in smiles]
    valid = [s for s in canon if s is not None]
    out: dict = {"valid": len(valid) / max(len(canon), 1)}
    for k in ks:
        if len(valid) >= k:
            out[f"unique@{k}"] = len(set(valid[:k])) / k
    ref = reference_statistics() if reference is None else reference
    nan = float("nan")
    out["FCD/Test"] = fcd(valid, ref["FCD"], device=device) if len(valid) >= 2 else nan
    out["SNN/Test"] = snn(valid, ref["SNN"]["fps"])
    out["Frag/Test"] = fragment_similarity(valid, ref["Frag"]["frag"])
    out["Scaf/Test"] = scaffold_similarity(valid, ref["Scaf"]["scaf"])
    out["IntDiv"] = moses_internal_diversity(valid, 1)
    out["IntDiv2"] = moses_internal_diversity(valid, 2)
    train = _moses_train() if train_smiles is None else set(train_smiles)
    distinct = set(valid)
    out["Novelty"] = len(distinct - train) / len(distinct) if distinct else nan
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


#: a molecule meets a request for a property when it is this close (issue 26: logP +- 0.5,
#: QED +- 0.05, molecular weight +- 25 Da, TPSA +- 10 square angstroms)
PROPERTY_TOLERANCES = {"logp": 0.5, "qed": 0.05, "mw": 25.0, "tpsa": 10.0}


@torch.no_grad()
def control_on_requests(
    model,
    data: Dataset,
    *,
    num_requests: int = 1000,
    names: Sequence[str] = tuple(PROPERTY_TOLERANCES),
    split: str = "test",
    tolerances: dict | None = None,
    temperature: float = 1.0,
) -> dict:
    """Property control on requests that exist: the property vectors of ``num_requests``
    held-out molecules (``split``), one generated molecule each, its properties recomputed
    with RDKit.

    Per property in ``names``: ``<name>_spearman`` and ``<name>_mae`` between requested and
    achieved values over the valid molecules, and ``<name>_success``, the share of *all*
    requests (an invalid molecule fails) met within ``tolerances`` (default
    :data:`PROPERTY_TOLERANCES`); ``success_all``, the share meeting every one at once;
    ``valid``. An unconditional model (``condition_dim`` 0) receives no request: its samples
    are paired with the same requests, which measures chance agreement.
    """
    tol = {**PROPERTY_TOLERANCES, **(tolerances or {})}
    missing = [n for n in names if n not in tol]
    if missing:
        raise ValueError(f"no tolerance for {missing}; pass tolerances={{name: width}}")
    test = data.eval_split(split)
    n = min(num_requests, len(test))
    device = model.device
    if model.config.condition_dim:
        ids = model.sample(test.y[:n].to(device), 1, temperature=temperature)[:, 0]  # (n, L)
    else:
        ids = model.sample(None, n, temperature=temperature)  # (n, L)
    requested = data.schema.decode(test.y[:n].cpu())
    canon = [canonical_smiles(s) for s in model.smiles(ids)]
    props = molecule_properties([s or "" for s in canon], progress=False)
    rows = [{"valid": c is not None, **{f"requested_{k}": v for k, v in req.items()},
             **dict(zip(PROPERTIES, p.tolist()))} for c, req, p in zip(canon, requested, props)]  # fmt: skip
    out: dict = {"requests": n, "valid": float(np.mean([r["valid"] for r in rows]))}
    out.update(property_control(rows, names))
    met = np.ones(n, dtype=bool)
    for name in names:
        ok = np.array([r["valid"] and abs(r[name] - r[f"requested_{name}"]) <= tol[name]
                       for r in rows])  # fmt: skip
        out[f"{name}_success"] = float(ok.mean())
        met &= ok
    out["success_all"] = float(met.mean())
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
