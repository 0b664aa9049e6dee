"""What ``train``, ``sample`` and ``score`` do for a molecule run (``--dataset moses``).

Parsing and printing only: the model is :class:`~pyro_cvae.models.MoleculeCVAE` (its run folder
finished by :func:`pyro_cvae.finish_run`, as every run's), the metrics are
:mod:`pyro_cvae.evaluate.molecules`, the chemistry is :mod:`pyro_cvae.data.molecules`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyro

from ..data import Dataset
from ..data.molecules import draw_molecules, read_molecules, split_smiles
from ..evaluate.molecules import generate_molecules, molecule_nll
from ..models import MoleculeConfig
from ..runs import finish_run
from ..train import TrainConfig, build_for, fit, load_run_data, load_schema, output_path
from ._common import print_metrics

__all__ = ["train_molecules", "sample_molecules", "score_molecules"]


def train_molecules(args, data: Dataset, train_cfg: TrainConfig, family: str) -> int:
    """``pyro-cvae train --dataset moses``: the sequence CVAE (``--hidden``: the GRU width,
    ``--embed-dim``, ``--word-dropout``, ``--encoder``, ``--property-weight``, ``--condition-dropout``; ``--prior`` (``conditional``: a learned
    p(z | c)), ``--prior-option`` and ``--latent-dims`` as for images; unset flags keep
    :class:`MoleculeConfig`'s defaults)."""
    hidden = args.hidden[0] if args.hidden else None
    if args.hidden and len(args.hidden) > 1:
        raise ValueError(f"a molecule model has one GRU width; give --hidden {hidden}")
    cfg = MoleculeConfig.for_data(data, unconditional=args.unconditional,
                                  latent_dim=args.latent_dim, hidden_dim=hidden,
                                  embed_dim=args.embed_dim,
                                  word_dropout=args.word_dropout,
                                  property_weight=args.property_weight,
                                  condition_dropout=args.condition_dropout,
                                  encoder=args.encoder, prior=args.prior,
                                  prior_options=dict(args.prior_option or {}) or None,
                                  latent_dims=args.latent_dims)  # fmt: skip
    out = Path(args.out)
    pyro.set_rng_seed(train_cfg.seed)
    model = build_for(cfg, family)
    history = fit(model, data, train_cfg, out=out, resume=args.resume, overwrite=args.overwrite,
                  progress=not args.quiet)  # fmt: skip
    print(f"trained {len(history)} epochs on {len(data.train)} molecules; run folder {out}")
    eval_samples = {} if args.eval_samples is None else {"eval_samples": args.eval_samples}
    done = finish_run(out, model, data, history, config=train_cfg, progress=not args.quiet,
                      **eval_samples)  # fmt: skip
    if done.metrics is not None:
        print("test metrics (nats per molecule; generated for the test set's properties):")
        print_metrics(done.metrics)
    return 0


def sample_molecules(args, model) -> int:
    """``pyro-cvae sample`` on a molecule run: a CSV of SMILES with their RDKit properties and
    validity, and a PNG grid of the first valid ones beside it."""
    if args.label:
        raise ValueError("a molecule model takes --condition (e.g. logp=2.5,qed=0.8), not --label")
    schema = load_schema(Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent)
    if model.config.condition_dim:
        conditions = ([schema.parse(t, extrapolate=args.extrapolate) for t in args.condition]
                      if args.condition else [{}])  # fmt: skip
    elif args.condition:
        raise ValueError("this molecule model is unconditional; drop --condition")
    else:
        schema, conditions = None, None
    with model.guided(args.guidance or 0.0):
        rows = generate_molecules(model, schema, conditions, args.num,
                                  temperature=args.temperature, extrapolate=args.extrapolate)  # fmt: skip
    out = output_path(args.run, "molecules.csv", args.out).with_suffix(".csv")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    valid = [r for r in rows if r["valid"]]
    png = out.with_suffix(".png")
    if valid:
        shown = valid[:20]
        draw_molecules([r["smiles"] for r in shown], png,
                       legends=[f"logP {r['logp']:.2f}, QED {r['qed']:.2f}" for r in shown])  # fmt: skip
    names = [a.name for a in schema.attributes] if schema is not None else []
    for m, cond in enumerate(conditions or [{}]):
        mine = [r for r in rows if r["condition"] == m]
        ok = [r for r in mine if r["valid"]]
        if schema is None:
            text = "unconditional"
        else:  # what was asked for; properties not named took their defaults (the medians)
            used = schema.complete(cond, extrapolate=args.extrapolate)
            text = ",".join(f"{k}={v:.3g}" for k, v in used.items())
            if len(cond) < len(used):
                text += " (unnamed properties at the training median)"
        achieved = ", ".join(
            f"{k} {sum(r[k] for r in ok) / len(ok):.3f}" for k in names if ok
        )  # fmt: skip
        print(f"{text}: {len(ok)}/{len(mine)} valid, {len({r['smiles'] for r in ok})} unique"
              + (f"; mean achieved {achieved}" if achieved else ""))  # fmt: skip
    print(f"wrote {out}" + (f" and {png}" if valid else " (no valid molecule to draw)"))
    return 0


def score_molecules(args, model) -> int:
    """``pyro-cvae score`` on a molecule run: -log p(x | c) of each molecule in nats, c its own
    RDKit properties (a CSV of SMILES with ``--molecules``, else a split of the run's data)."""
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    cfg = model.config
    if args.molecules:
        schema = load_schema(folder) if cfg.condition_dim else None
        x, y, smiles = read_molecules(args.molecules, cfg.tokens, cfg.max_len, schema)
    else:
        data = load_run_data(args.run, args.data_dir)
        split = getattr(data, args.split)
        x, y, smiles = split.x, split.y, split_smiles(data, args.split)
    if args.num:
        x, smiles = x[: args.num], smiles[: args.num]
        y = None if y is None else y[: args.num]
    scores = molecule_nll(model, x, y if cfg.condition_dim else None, args.num_samples)
    out = output_path(args.run, "scores.csv", args.out)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "smiles", "neg_log_px"])
        for i, (s, v) in enumerate(zip(smiles, scores.tolist())):
            w.writerow([i, s, f"{v:.6f}"])
    what = "-log p(x|c)" if cfg.condition_dim else "-log p(x)"
    print(f"{len(scores)} molecules: mean {what} = {scores.mean().item():.3f} nats "
          f"(min {scores.min().item():.3f}, max {scores.max().item():.3f}), K={args.num_samples}")  # fmt: skip
    print(f"wrote {out}")
    return 0
