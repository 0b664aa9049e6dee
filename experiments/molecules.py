"""Molecules that follow the request (issue 26): sequence CVAEs on MOSES with MOSES's own
metrics and property control measured on requests that exist.

Rows (``--variants``), every one the same GRU networks and budget on a seeded MOSES subset:

* ``VAE``: no condition (its control numbers are chance: it receives no request);
* ``CVAE``: the properties (logP, QED, MW, TPSA, SA) as the condition, z ~ N(0, I);
* ``CVAE p(z|c)``: the same with a learned prior p(z | c) (``prior="conditional"``);
* ``CVAE p(z|c) + property loss``: and ``property_weight`` (``--property-weight``): a property
  predictor trained on the real molecules scores the decoder's soft output from z ~ p(z | c)
  (:class:`~pyro_cvae.models.MoleculeCVAE`), so the decoder must carry c into the molecule;
  the row is named with its weight, ``CVAE p(z|c) + property loss (w=10)``;
* ``CVAE p(z|c) (word dropout 0)`` and ``(word dropout 0.5)``: the conditional-prior row with
  another word dropout than the default 0.25. Word dropout starves the decoder of the tokens
  so far and pushes information into z; with less of it, the decoder must take what z does not
  carry (the properties a draw from p(z | c) does not pin down) from c;
* ``CVAE p(z|c) (logP only)``: the same molecules conditioned on logP alone
  (``load_dataset("moses", condition="logp")``): a request that fixes no other property, so
  nothing the data rarely holds is asked; its control is measured on logP only;
* ``CVAE p(z|c) (free bits 0.05)`` and ``(free bits 0.25)``: the conditional-prior row
  trained with a floor of that many nats under each latent coordinate's KL
  (``fit(free_bits=...)``, :class:`~pyro_cvae.infer.FreeBitsELBO`), against the posterior
  collapse the *KL(q‖p)* column shows;
* ``CVAE p(z|c) (cond. dropout 0.2)`` and ``(...; guidance w)`` for w = 1, 3, 6, 10: one model
  whose decoder is trained without c for 20% of the molecules (``condition_dropout``), so it
  knows p(x | z) beside p(x | z, c), sampled with classifier-free guidance w
  (``MoleculeCVAE.sample(guidance=w)``: every token from (1 + w) log p(. | z, c) - w log
  p(. | z)), which leans on what the condition changes.

Measured per row:

* **MOSES's metrics** (:func:`~pyro_cvae.evaluate.molecules.moses_metrics`) of ``--generate``
  molecules (MOSES recommends 30,000), the conditional rows at property vectors drawn from the
  training molecules: valid, unique@1k/@10k, FCD/Test, SNN/Test, Frag/Test, Scaf/Test (against
  MOSES's shipped test statistics), IntDiv, IntDiv2, novelty against all 1.6M MOSES training
  molecules; the same metrics of as many real training molecules beside them show what they
  give at this sample size (FCD falls with the number of molecules);
* **control (a)**, requests that exist (:func:`~pyro_cvae.evaluate.molecules.control_on_requests`):
  the property vectors of ``--requests`` held-out test molecules, one molecule each; Spearman
  and MAE per property (logP, QED, MW, TPSA) between requested and achieved (RDKit), and the
  success rate within logP +- 0.5, QED +- 0.05, MW +- 25, TPSA +- 10 (each, and all four);
* **control (b)**, each property alone: ``--grid`` targets between its 10th and 90th
  percentile, the other properties at their medians among the training molecules nearest the
  target in that property (the conditional medians), ``--per-target`` molecules each;
* **control (c)**, the old logP grid (other properties at their overall medians), for
  comparison with earlier results.

Published numbers (MOSES README's table: VAE, CharRNN, JTN-VAE) are quoted, not rerun.

Resumable: each row trains in a run folder under ``--runs-dir`` (a checkpoint every epoch),
``--epochs-per-call`` epochs at a time; after each call the row is written with its epochs and
marked ``final`` once it reached ``--epochs`` (``still training`` before): run the same command
again to continue. Writes ``molecules.json``, ``molecules.md`` and ``molecules.png`` (valid
molecules of the last conditional row per logP target) into ``--results-dir``.

    python experiments/molecules.py --train-size 20000 --epochs 3 --warmup-epochs 1
    python experiments/molecules.py --train-size 100000 --epochs 10 --generate 30000
    python experiments/molecules.py --tiny           # smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro import poutine

import pyro_cvae as pc
from pyro_cvae import fit
from pyro_cvae.checkpoint import CheckpointError, latest_checkpoint
from pyro_cvae.data.molecules import load_moses, split_smiles
from pyro_cvae.evaluate.molecules import (
    PROPERTY_TOLERANCES,
    control_on_requests,
    generate_molecules,
    molecule_metrics,
    moses_metrics,
    property_control,
)
from pyro_cvae.infer.free_bits import per_coordinate_kl
from pyro_cvae.models import MoleculeConfig, MoleculeCVAE

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path(__file__).resolve().parent / "runs" / "molecules"

#: row name -> (run folder prefix, MoleculeConfig fields); "{w}" is --property-weight
VARIANTS = {
    "VAE": ("vae", {"unconditional": True}),
    "CVAE": ("cvae", {}),
    "CVAE p(z|c)": ("cvae-cond", {"prior": "conditional"}),
    "CVAE p(z|c) + property loss": ("cvae-cond-prop{w:g}",
                                    {"prior": "conditional", "property_weight": "{w}"}),
    "CVAE p(z|c) (word dropout 0)": ("cvae-cond-wd0", {"prior": "conditional", "word_dropout": 0.0}),
    "CVAE p(z|c) (word dropout 0.5)": ("cvae-cond-wd50",
                                      {"prior": "conditional", "word_dropout": 0.5}),
    "CVAE p(z|c) (logP only)": ("cvae-cond-logp", {"prior": "conditional", "condition": "logp"}),
    # a floor of free bits under each latent coordinate's KL (a training option, not the model's)
    "CVAE p(z|c) (free bits 0.05)": ("cvae-cond-fb5", {"prior": "conditional", "free_bits": 0.05}),
    "CVAE p(z|c) (free bits 0.25)": ("cvae-cond-fb25", {"prior": "conditional", "free_bits": 0.25}),
    # one trained model, sampled three ways (the rows share the run folder)
    "CVAE p(z|c) (cond. dropout 0.2)": ("cvae-cond-cd20",
                                        {"prior": "conditional", "condition_dropout": 0.2}),
    "CVAE p(z|c) (cond. dropout 0.2; guidance 1)": (
        "cvae-cond-cd20", {"prior": "conditional", "condition_dropout": 0.2, "guidance": 1.0}),
    "CVAE p(z|c) (cond. dropout 0.2; guidance 3)": (
        "cvae-cond-cd20", {"prior": "conditional", "condition_dropout": 0.2, "guidance": 3.0}),
    "CVAE p(z|c) (cond. dropout 0.2; guidance 6)": (
        "cvae-cond-cd20", {"prior": "conditional", "condition_dropout": 0.2, "guidance": 6.0}),
    "CVAE p(z|c) (cond. dropout 0.2; guidance 10)": (
        "cvae-cond-cd20", {"prior": "conditional", "condition_dropout": 0.2, "guidance": 10.0}),
}  # fmt: skip

CONTROLLED = tuple(PROPERTY_TOLERANCES)  # logP, QED, MW, TPSA

#: variant fields that configure training (fit), not the model
TRAIN_FIELDS = ("free_bits",)

#: MOSES README's current table (Polykovskiy et al. 2020; trained on all 1.6M molecules, 30,000
#: samples, means over seeds), the numbers issue 26 anchors on
PUBLISHED = {
    "MOSES VAE": {"valid": 0.977, "unique@10000": 0.998, "FCD/Test": 0.099, "IntDiv": 0.856,
                  "Novelty": 0.695},
    "MOSES CharRNN": {"FCD/Test": 0.073, "Novelty": 0.842},
    "MOSES JTN-VAE": {"FCD/Test": 0.395},
}  # fmt: skip

PUBLISHED_NOTE = (
    "MOSES rows: the MOSES README's table (Polykovskiy et al. 2020), models trained on all 1.6M "
    "MOSES training molecules and scored on 30,000 samples (means over seeds); ours train on a "
    "subset (the budget beside each row) and are scored on --generate samples, so FCD, which "
    "falls with the sample size, is higher at a few thousand samples than at 30,000 even for "
    "the same model. Lim et al. 2018 (CVAE on ZINC; MW, logP, HBD, HBA, TPSA at once) show "
    "control by case studies, not by these numbers; none of theirs is quoted."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-size", type=int, default=20000, help="MOSES molecules (20000)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per row (3)")
    p.add_argument("--epochs-per-call", type=int, default=None,
                   help="epochs trained before a row is written (default: all --epochs)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128, help="molecules per step (128)")
    p.add_argument("--hidden", type=int, default=256, help="GRU width (256)")
    p.add_argument("--latent-dim", type=int, default=56, help="latent dimensions (56)")
    p.add_argument("--warmup-epochs", type=int, default=1, help="KL warm-up epochs (1)")
    p.add_argument("--property-weight", type=float, default=10.0,
                   help="weight of the property loss row (10)")  # fmt: skip
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"rows, comma-separated, of {list(VARIANTS)} (all)")  # fmt: skip
    p.add_argument("--generate", type=int, default=1000,
                   help="molecules for MOSES's metrics (1000; MOSES uses 30000)")  # fmt: skip
    p.add_argument("--requests", type=int, default=1000,
                   help="test molecules whose properties are requested, control (a) (1000)")  # fmt: skip
    p.add_argument("--grid", type=int, default=5, help="targets per property, (b) and (c) (5)")
    p.add_argument("--per-target", type=int, default=50, help="molecules per target (50)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--per-row", type=int, default=5, help="molecules per logP target drawn (5)")
    p.add_argument("--results-dir", default=str(RESULTS), help="where results are written")
    p.add_argument("--runs-dir", default=None,
                   help="run folders (checkpoints every epoch; run the same command again to "
                        "continue a stopped run); default experiments/runs/molecules, or "
                        "RESULTS_DIR/runs with --tiny")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--tiny", action="store_true", help="smoke-test budget (seconds)")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite molecules.md from molecules.json in --results-dir; no training")  # fmt: skip
    return p


def _variant(name: str, weight: float) -> tuple[str, dict]:
    prefix, fields = VARIANTS[name]
    fields = {k: (weight if v == "{w}" else v) for k, v in fields.items()}
    return prefix.format(w=weight), fields


def _row_name(variant: str, fields: dict) -> str:
    """The table's name of a row: the variant, with its property weight when it has one."""
    w = fields.get("property_weight")
    return f"{variant} (w={w:g})" if w else variant


def _epochs_done(run: Path) -> int:
    path = run / "metrics.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def _train(data, fields: dict, args, out: Path, epochs: int):
    """Train (or resume, from the run folder ``out``) one row up to ``epochs``; returns the
    model and its training seconds summed over the epochs of every call."""
    pyro.set_rng_seed(args.seed)
    train = {k: v for k, v in fields.items() if k in TRAIN_FIELDS}
    cfg = MoleculeConfig.for_data(data, latent_dim=args.latent_dim, hidden_dim=args.hidden,
                                  **{k: v for k, v in fields.items() if k not in train})  # fmt: skip
    model = MoleculeCVAE(cfg)
    try:
        history = fit(model, data, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
                      warmup_epochs=args.warmup_epochs, out=out, resume=True,
                      progress=not args.quiet, **train)  # fmt: skip
    except CheckpointError as e:
        raise SystemExit(f"{e}\n(--runs-dir {out.parent} holds a run of other settings: pass "
                         "another --runs-dir, or remove that folder to start it again)") from e  # fmt: skip
    return model.eval(), sum(r["seconds"] for r in history.rows)


def _conditional_medians(values: np.ndarray, names: list[str], target: str, v: float) -> dict:
    """The request for ``target = v`` with every other property at its median among the 5% of
    training molecules nearest v in ``target``."""
    j = names.index(target)
    near = np.argsort(np.abs(values[:, j] - v))[: max(1, len(values) // 20)]
    med = np.nanmedian(values[near], axis=0)
    return {n: (float(v) if n == target else float(med[i])) for i, n in enumerate(names)}


def _evaluate(model, data, conditional: bool, args, grids: dict) -> dict:
    """MOSES's metrics, control (a), (b) and (c) of one trained row."""
    schema = data.schema if conditional else None
    names = [a.name for a in data.schema.attributes]
    values = np.array([[v[n] for n in names] for v in data.schema.decode(data.train.y)])
    out: dict = {}
    # MOSES's metrics: the conditional rows at property vectors of training molecules
    pyro.set_rng_seed(args.seed + 1)
    if conditional:
        pick = np.random.default_rng(args.seed).integers(len(data.train), size=args.generate)
        ids = model.sample(data.train.y[torch.as_tensor(pick)].to(model.device), 1)[:, 0]
    else:
        ids = model.sample(None, args.generate)
    smiles = model.smiles(ids)
    out["latent"] = _latent_use(model, data, conditional)
    out["moses"] = moses_metrics(smiles)
    out["subset"] = molecule_metrics(smiles, split_smiles(data, "train"), ks=())
    # (a) requests that exist
    pyro.set_rng_seed(args.seed + 2)
    controlled = [n for n in CONTROLLED if n in names]  # a model conditioned on a subset
    out["control"] = control_on_requests(model, data, num_requests=args.requests, names=controlled)
    # (b) each property alone, the others at their conditional medians; (c) the logP grid
    out["single"], rows_c = {}, None
    for target in controlled:
        requests = [_conditional_medians(values, names, target, v) for v in grids[target]]
        rows = _generate(model, schema, requests, args)
        m = property_control(rows, [target])
        m[f"{target}_success"] = _success(rows, target)
        out["single"].update(m)
    if {"logp", "qed"} <= set(names):  # (d) the 2-D request grid, logP x QED
        out["grid2d"] = _grid_2d(model, schema, values, names, grids, args)
    requests_c = [{"logp": v} for v in grids["logp"]]
    rows_c = _generate(model, schema, requests_c, args)
    out["grid"] = property_control(rows_c, ["logp"])
    out["grid"]["logp_achieved_mean"] = _achieved(rows_c, grids["logp"], args.per_target)
    out["_rows_c"] = rows_c
    return out


@torch.no_grad()
def _latent_use(model, data, conditional: bool, n: int = 1000) -> dict:
    """How much the latent code carries, over ``n`` validation molecules: KL(q(z | x, c) ||
    p(z | c)) per molecule (near 0 when the decoder ignores z: posterior collapse) and the
    active units of Burda et al. (:func:`pyro_cvae.active_units`)."""
    x = data.val.x[:n].to(model.device)
    y = data.val.y[:n].to(model.device) if conditional else None
    guide = poutine.trace(model.guide).get_trace(x, y)
    prior = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, y)
    kl = per_coordinate_kl(guide.nodes["z"]["fn"], prior.nodes["z"]["fn"]).mean(0)  # (D,)
    active, _ = pc.active_units(model, x, y)
    return {"kl": float(kl.sum()), "active": active, "of": int(kl.numel())}


def _grid_2d(model, schema, values, names, grids: dict, args) -> dict:
    """Control (d): every pair of ``--grid`` logP and QED targets (between their 10th and 90th
    percentiles), the other properties at their medians among the 5% of training molecules
    nearest the pair (logP and QED scaled by their spreads); ``--per-target`` molecules each.
    Returns the targets and the mean achieved logP and QED of each pair's valid molecules
    (``None`` where none is valid), target-major: ``achieved[i][j]`` for logP ``i``, QED ``j``."""
    i, j = names.index("logp"), names.index("qed")
    spread = np.nanstd(values[:, [i, j]], axis=0)
    requests = []
    for lv in grids["logp"]:
        for qv in grids["qed"]:
            d = np.abs((values[:, [i, j]] - [lv, qv]) / spread).sum(1)
            near = np.argsort(d)[: max(1, len(values) // 20)]
            med = np.nanmedian(values[near], axis=0)
            requests.append(
                {n: float(med[k]) for k, n in enumerate(names)} | {"logp": lv, "qed": qv}
            )
    rows = _generate(model, schema, requests, args)
    achieved = []
    for m in range(len(requests)):
        mine = [r for r in rows[m * args.per_target : (m + 1) * args.per_target] if r["valid"]]
        achieved.append([round(float(np.mean([r[k] for r in mine])), 3) if mine else None
                         for k in ("logp", "qed")])  # fmt: skip
    G = len(grids["qed"])
    return {"logp": grids["logp"], "qed": grids["qed"],
            "achieved": [achieved[a * G : (a + 1) * G] for a in range(len(grids["logp"]))]}  # fmt: skip


def _grid_picture(out: dict, folder: Path, suffix: str) -> str | None:
    """One panel per conditional row with control (d): each logP x QED request (x) joined to
    the mean of what was achieved (o). Drawn from the saved numbers (also by --render-only)."""
    rows = {n: m["grid2d"] for n, m in out["models"].items() if m.get("grid2d")}
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4), squeeze=False)
    for ax, (name, g) in zip(axes[0], rows.items()):
        for a, lv in enumerate(g["logp"]):
            for b, qv in enumerate(g["qed"]):
                got = g["achieved"][a][b]
                ax.plot(lv, qv, "x", color=f"C{a}")
                if got is not None:
                    ax.plot([lv, got[0]], [qv, got[1]], "-", color=f"C{a}", lw=0.8, alpha=0.6)
                    ax.plot(*got, "o", color=f"C{a}", ms=4)
        ax.set(title=name, xlabel="logP", ylabel="QED")
    fig.suptitle("requested (x) and mean achieved (o) logP and QED, the other properties at "
                 "their conditional medians", fontsize=9)  # fmt: skip
    fig.tight_layout()
    path = folder / f"molecules_logp_qed{suffix}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _generate(model, schema, requests: list[dict], args) -> list[dict]:
    """``--per-target`` molecules per request; an unconditional model's samples are paired
    with the requests in groups of the same size (chance)."""
    pyro.set_rng_seed(args.seed + 3)
    if schema is not None:
        return generate_molecules(model, schema, requests, args.per_target)
    rows = generate_molecules(model, None, None, args.per_target * len(requests))
    for i, r in enumerate(rows):
        full = requests[i // args.per_target]
        r.update({f"requested_{k}": v for k, v in full.items()})
    return rows


def _success(rows: list[dict], name: str) -> float:
    tol = PROPERTY_TOLERANCES[name]
    return float(np.mean([r["valid"] and abs(r[name] - r[f"requested_{name}"]) <= tol
                          for r in rows]))  # fmt: skip


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = Path(args.results_dir)
    suffix = ".tiny" if args.tiny else ""
    if args.render_only:  # rewrite the tables from the saved numbers
        out = json.loads((folder / f"molecules{suffix}.json").read_text())
        (folder / f"molecules{suffix}.md").write_text(_markdown(out))
        return out
    given = sys.argv[1:] if argv is None else list(argv)
    if args.tiny:
        args.train_size, args.hidden, args.latent_dim = 300, 16, 4
        args.epochs = args.epochs if "--epochs" in given else 1
        args.warmup_epochs, args.generate, args.grid, args.per_target = 0, 20, 3, 5
        args.requests = 20
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown rows {unknown}; choose from {list(VARIANTS)}")
    # --quiet silences the RDKit progress bar of a subset computed the first time, too
    data = load_moses(args.train_size, progress=not args.quiet)
    names = [a.name for a in data.schema.attributes]
    values = np.array([[v[n] for n in names] for v in data.schema.decode(data.train.y)])
    grids = {t: np.linspace(*np.nanpercentile(values[:, names.index(t)], [10, 90]),
                            args.grid).round(3).tolist() for t in CONTROLLED}  # fmt: skip
    # the property weight is not part of the budget: it names its row (and run folder)
    budget_keys = ("train_size", "epochs", "batch_size", "hidden", "latent_dim",
                   "warmup_epochs", "generate", "requests", "grid", "per_target", "seed",
                   "threads")  # fmt: skip
    # rows trained by separate --variants calls share the budget: the command recorded is the
    # one that writes every row of the file (the same flags, all variants)
    every_row = [a for i, a in enumerate(given) if a != "--variants"
                 and not (i and given[i - 1] == "--variants") and not a.startswith("--variants=")]  # fmt: skip
    out: dict = {"command": "python experiments/molecules.py " + shlex.join(every_row),
                 "budget": {k: getattr(args, k) for k in budget_keys},
                 "grids": grids, "logp_grid": grids["logp"], "published": PUBLISHED,
                 "models": {}}  # fmt: skip
    runs = Path(args.runs_dir) if args.runs_dir else (
        Path(args.results_dir) / "runs" if args.tiny else RUNS)  # fmt: skip
    previous = folder / f"molecules{suffix}.json"
    if previous.exists():  # rows of other variants written earlier with this budget stay
        old = json.loads(previous.read_text())
        if _same_budget(old.get("budget"), out):
            out["models"].update(old.get("models", {}))
            out["picture"] = old.get("picture")
            if "reference" in old:
                out["reference"] = old["reference"]
    if "reference" not in out:  # what the metrics give real molecules at this sample size
        real = split_smiles(data, "train")
        pick = np.random.default_rng(args.seed).integers(len(real), size=args.generate)
        out["reference"] = moses_metrics([real[i] for i in pick])
        _write(out, folder, suffix)
    for variant in variants:
        prefix, fields = _variant(variant, args.property_weight)
        name = _row_name(variant, fields)
        run = runs / f"{prefix}-n{args.train_size}-seed{args.seed}"
        guidance = fields.pop("guidance", 0.0)  # how the row samples, not how it trains
        done_file = run / (f"result-guidance{guidance:g}.json" if guidance else "result.json")
        done = _epochs_done(run)
        if done_file.exists():
            saved = json.loads(done_file.read_text())
            if _same_budget(saved.get("budget"), out) and saved["metrics"]["epochs"] == done:
                # evaluated before the KL was measured (and its model still at hand)
                if "latent" not in saved["metrics"] and latest_checkpoint(run) is not None:
                    saved["metrics"]["latent"] = _latent_use(
                        pc.load(run), _row_data(data, fields, args), not fields.get("unconditional")
                    )
                    done_file.write_text(json.dumps(saved, default=float))
                out["models"][name] = saved["metrics"]
                out["picture"] = out.get("picture") or saved.get("picture")
                print(name, "(evaluated earlier)", json.dumps(saved["metrics"]["control"]))
                if done >= args.epochs:
                    continue
        step = args.epochs_per_call or args.epochs
        target = min(args.epochs, max(done, 0) + step) if done < args.epochs else done
        row_data = _row_data(data, fields, args)
        fields.pop("condition", None)
        model, seconds = _train(row_data, fields, args, run, target)
        conditional = not fields.get("unconditional")
        with model.guided(guidance):
            metrics = _evaluate(model, row_data, conditional, args, grids)
        rows_c = metrics.pop("_rows_c")
        metrics.update(train_seconds=seconds, epochs=_epochs_done(run), of_epochs=args.epochs)
        picture = None
        if conditional:
            picture = _picture(
                rows_c, grids["logp"], args, "molecules.tiny.png" if args.tiny else ""
            )
            out["picture"] = (picture and Path(picture).name) or out.get("picture")
        out["models"][name] = metrics
        done_file.write_text(json.dumps({"budget": out["budget"], "metrics": metrics,
                                         "picture": out.get("picture") if conditional else None},
                                        default=float))  # fmt: skip
        print(name, json.dumps(metrics["control"]))
        _write(out, folder, suffix)  # rows are written as they complete
    _write(out, folder, suffix)
    return out


def _row_data(data, fields: dict, args):
    """The data of a row: ``data``, or the same molecules conditioned on the row's subset of
    properties (its ``condition`` field)."""
    chosen = fields.get("condition")
    if chosen is None:
        return data
    return load_moses(args.train_size, properties=chosen, progress=not args.quiet)


def _write(out: dict, folder: Path, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    out["grid_picture"] = _grid_picture(out, folder, suffix)
    (folder / f"molecules{suffix}.json").write_text(json.dumps(out, indent=2, default=float))
    (folder / f"molecules{suffix}.md").write_text(_markdown(out))


def _same_budget(saved: dict | None, out: dict) -> bool:
    """Whether a saved row's budget is this run's (the thread count does not matter; budgets
    written before the property weight named its row held it: it is ignored)."""
    drop = lambda b: {k: v for k, v in (b or {}).items()  # noqa: E731
                      if k not in ("threads", "property_weight")}  # fmt: skip
    return saved is not None and drop(saved) == drop(out["budget"])


def _achieved(rows: list[dict], grid: list[float], per_target: int) -> list[float | None]:
    """Mean achieved logP of the valid molecules of each grid target (rows target-major)."""
    means = []
    for m in range(len(grid)):
        vals = [r["logp"] for r in rows[m * per_target : (m + 1) * per_target] if r["valid"]]
        means.append(round(float(np.mean(vals)), 3) if vals else None)
    return means


def _picture(rows: list[dict], grid: list[float], args, name: str) -> str | None:
    """A grid of valid molecules, ``--per-row`` per logP target, one row each (blank cells where
    a target has fewer valid molecules)."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols, legends = [], []
    for m, target in enumerate(grid):
        mine = [r for r in rows[m * args.per_target : (m + 1) * args.per_target] if r["valid"]]
        mine = mine[: args.per_row]
        mols += [Chem.MolFromSmiles(r["smiles"]) for r in mine]
        legends += [f"asked logP {target:.2f}, got {r['logp']:.2f}" for r in mine]
        mols += [Chem.Mol()] * (args.per_row - len(mine))
        legends += [""] * (args.per_row - len(mine))
    if not any(legends):
        return None
    path = Path(args.results_dir) / (name or "molecules.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Draw.MolsToGridImage(mols, molsPerRow=args.per_row, subImgSize=(220, 220),
                                 legends=legends)  # fmt: skip
    image.save(str(path))
    return str(path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return "-" if v is None else str(v)


def _status(m: dict) -> str:
    e, of = m.get("epochs"), m.get("of_epochs")
    if e is None or of is None or e >= of:
        return "final"
    return f"still training ({e} of {of} epochs: run the command again)"


def _table(out: dict, header: list[str], cells, published: bool = False) -> list[str]:
    b = out["budget"]
    lines = ["| model | " + " | ".join(header) + " | budget | status |",
             "|---" * (len(header) + 3) + "|"]  # fmt: skip
    for name, m in out["models"].items():
        budget = f"{b['train_size']} x {m.get('epochs', b['epochs'])} ep"
        cell = name.replace("|", "\\|")  # p(z|c): a bar would end the table cell
        lines.append(f"| {cell} | " + " | ".join(_fmt(c) for c in cells(m)) +
                     f" | {budget} | {_status(m)} |")  # fmt: skip
    if published and out.get("reference"):
        lines.append(f"| MOSES training molecules ({b['generate']} of this subset, drawn with "
                     "replacement) | " + " | ".join(_fmt(c) for c in cells({"moses": out["reference"]}))
                     + " | - | reference |")  # fmt: skip
    if published:
        for name, m in out["published"].items():
            row = {"moses": m}
            lines.append(f"| {name} | " + " | ".join(_fmt(c) for c in cells(row))
                         + " | 1.6M (all) | published |")  # fmt: skip
    return lines


def _markdown(out: dict) -> str:
    moses_cols = ["valid", "unique@1000", "unique@10000", "FCD/Test", "SNN/Test", "Frag/Test",
                  "Scaf/Test", "IntDiv", "IntDiv2", "Novelty"]  # fmt: skip
    lines = ["# Molecules that follow the request (MOSES)", "",
             f"Written by `experiments/molecules.py`: `{out.get('command', '(not recorded)')}`.",
             "", f"Budget (2 CPU cores, shared with other runs): `{json.dumps(out['budget'])}`.",
             "", "## MOSES's metrics", "",
             f"{out['budget']['generate']} generated molecules per row (the conditional rows at "
             "property vectors of training molecules), against MOSES's test set (its shipped "
             "statistics); novelty against all 1.6M MOSES training molecules. KL(q‖p): "
             "KL(q(z | x, c) || p(z | c)) per molecule over 1,000 validation molecules (near 0: "
             "the decoder ignores z, posterior collapse); active z: the coordinates whose "
             "posterior mean varies over them by more than 0.01 (Burda et al.'s active units, "
             "`pc.active_units`).", ""]  # fmt: skip
    lines += _table(out, moses_cols + ["KL(q‖p)", "active z", "train_seconds"],
                    lambda m: [m.get("moses", {}).get(c) for c in moses_cols]
                    + _latent_cells(m) + [m.get("train_seconds")], published=True)  # fmt: skip
    lines += ["", "## Control (a): requests that exist", "",
              f"The property vectors of {out['budget']['requests']} held-out test molecules, "
              "one generated molecule each; Spearman (rho) and MAE between requested and "
              "achieved over the valid molecules, success: the share of requests met within "
              + ", ".join(f"{k} +- {v:g}" for k, v in PROPERTY_TOLERANCES.items())
              + " (an invalid molecule fails). The VAE receives no request: chance.", ""]  # fmt: skip
    cols_a = ["valid"] + [f"{p}_{s}" for p in CONTROLLED for s in ("spearman", "mae", "success")]
    cols_a.append("success_all")
    lines += _table(out, cols_a, lambda m: [m.get("control", {}).get(c) for c in cols_a])
    lines += ["", "## Control (b): one property at a time", "",
              f"{out['budget']['grid']} targets per property between its 10th and 90th "
              "percentile of the training molecules, the other properties at their medians "
              "among the 5% of training molecules nearest the target; "
              f"{out['budget']['per_target']} molecules per target. Targets: "
              f"`{json.dumps(out.get('grids', {}))}`.", ""]  # fmt: skip
    cols_b = [f"{p}_{s}" for p in CONTROLLED for s in ("spearman", "mae", "success")]
    lines += _table(out, cols_b, lambda m: [m.get("single", {}).get(c) for c in cols_b])
    lines += ["", "## Control (c): the old logP grid", "",
              f"logP targets {out['logp_grid']}, every other property at its median (the "
              "protocol of earlier results: it asks for combinations the data rarely holds).",
              ""]  # fmt: skip
    cols_c = ["logp_spearman", "logp_mae", "logp_achieved_mean"]
    lines += _table(out, cols_c, lambda m: [m.get("grid", {}).get(c) for c in cols_c])
    if any(m.get("grid2d") for m in out["models"].values()):
        per = out["budget"]["per_target"]
        lines += ["", "## Control (d): logP x QED requests", "",
                  "Every pair of the logP and QED targets of (b), the other properties at their "
                  f"medians among the 5% of training molecules nearest the pair; {per} molecules "
                  "each. Spearman correlation between requested and mean achieved value over "
                  "the pairs ('-': a row evaluated before (d) existed).", ""]  # fmt: skip
        lines += _table(out, ["logp_rho_pairs", "qed_rho_pairs"],
                        lambda m: _grid_spearman(m["grid2d"]) if m.get("grid2d") else [None, None])  # fmt: skip
        if out.get("grid_picture"):
            lines += ["", f"![logP x QED requests and what was achieved]({out['grid_picture']})"]
    lines += ["", "## What the numbers say", "", _verdict(out["models"])]
    lines += ["", "## Published baselines", "", PUBLISHED_NOTE]
    if out.get("picture"):
        lines += ["", f"![valid molecules per logP target]({out['picture']})"]
    return "\n".join(lines) + "\n"


def _latent_cells(m: dict) -> list:
    """KL per validation molecule and active coordinates ('-': a row evaluated before they
    were measured, or a published row)."""
    lat = m.get("latent")
    return [lat["kl"], f"{lat['active']}/{lat['of']}"] if lat else [None, None]


def _grid_spearman(g: dict) -> list[float | None]:
    """Spearman correlation of requested and mean achieved logP and QED over the grid's pairs."""
    from scipy.stats import spearmanr

    pairs = [(lv, qv, got) for a, lv in enumerate(g["logp"]) for b, qv in enumerate(g["qed"])
             if (got := g["achieved"][a][b]) is not None]  # fmt: skip
    if len(pairs) < 3:
        return [None, None]
    return [float(spearmanr([p[k] for p in pairs], [p[2][k] for p in pairs])[0]) for k in (0, 1)]


def _verdict(models: dict) -> str:
    """What control (a) says, computed, not written by hand."""
    rho = {n: m.get("control", {}).get("logp_spearman") for n, m in models.items()}
    known = {n: r for n, r in rho.items() if r is not None and r == r}
    if not known:
        return "No row has enough valid molecules for a Spearman correlation yet."
    best = max((n for n in known if n != "VAE"), key=known.get, default=None)
    parts = [f"{n} {r:.3f}" for n, r in known.items()]
    text = "Spearman correlation between requested and achieved logP, control (a): " + ", ".join(
        parts
    )
    if best is not None:
        m = models[best]["control"]
        n = m.get("requests", 1000)
        text += (
            f". The highest conditional row is {best} (logP within 0.5 for "
            f"{m.get('logp_success', float('nan')):.3f} of the requests, all four properties "
            f"within tolerance for {m.get('success_all', float('nan')):.3f}); a Spearman "
            f"correlation over {n} requests has a standard error of about 1/sqrt({n - 1}) = "
            f"{1 / np.sqrt(max(n - 1, 1)):.3f}, so rows closer than twice that do not differ."
        )
    return text


if __name__ == "__main__":
    main()
