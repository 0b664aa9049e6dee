"""CVAE against a conditional GAN at equal training time: control, fidelity, diversity, sharpness.

The blog post this project follows compares the two in a table: the GAN's samples are sharper,
the CVAE is more controllable and more diverse. This script checks those claims on MNIST with
the same MLP sizes for both: the library's CVAE (``ModelConfig.for_data``: one hidden layer of
400, latent 50, trained by :func:`pyro_cvae.fit` on dynamically binarised images) and a
conditional GAN in plain PyTorch (generator: noise of the CVAE's latent width + one-hot label ->
the decoder's hidden sizes -> sigmoid pixels; discriminator: image + one-hot -> the encoder's
hidden sizes -> one logit; non-saturating loss, Adam 2e-4, betas (0.5, 0.999), grey-level
images). Each model trains for the same ``--budget`` of CPU time (``--clock cpu``, the time the
process ran: fair when other jobs share the machine; ``--clock wall`` for elapsed time) on
``--threads`` CPU threads.

Metrics on ``--per-label`` images generated for every label (CVAE images are the decoder's
Bernoulli means, z drawn from the prior; GAN images are the generator's output), all read by our
own judge classifier of real images (:func:`pyro_cvae.train.train_classifier`; no downloaded
network): the control score (fraction the judge labels as requested), the Fréchet distance to
the real test images in the judge's penultimate features (FID-style; real training images of the
same count give its floor), within-label diversity (mean pairwise feature distance; the test
images' own is the reference) and two sharpness proxies (see
:mod:`pyro_cvae.evaluate.fidelity`).

A model whose training finished is kept in ``--runs`` (``experiments/runs/cgan/<dataset>``) and
reused by a rerun with the same settings, so only the metrics are recomputed.

Writes ``experiments/results/cgan.{md,json,png}``.

    python experiments/cgan.py --budget 300          # MNIST, 300 s per model, one thread
    python experiments/cgan.py --tiny --dataset digits  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import pyro_cvae
from pyro_cvae import CVAE, ModelConfig, TrainConfig, fit, load_dataset, plots
from pyro_cvae.data import Dataset
from pyro_cvae.evaluate import classifier_features, sample_quality, within_label_diversity
from pyro_cvae.evaluate.fidelity import frechet_distance, sharpness
from pyro_cvae.train import train_classifier

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = HERE / "runs" / "cgan"
MODELS = ("cvae", "gan")
#: the CVAE trains in pieces of at most this many seconds so that it stops near the budget
CHUNK_SECONDS = 15.0
#: --clock: CPU time of this process (unaffected by other jobs on a shared machine) or wall time
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", choices=["mnist", "digits"],
                   help="data set (mnist; digits for smoke tests)")  # fmt: skip
    p.add_argument("--budget", type=float, default=300.0,
                   help="training seconds for each model, on --clock (300)")  # fmt: skip
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="what a budget second is: 'cpu', the CPU time the process used "
                        "(fair on a shared machine; default), or 'wall', elapsed time")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step, both (128)")
    p.add_argument("--per-label", type=int, default=200,
                   help="images generated per label for the metrics (200)")  # fmt: skip
    p.add_argument("--columns", type=int, default=6,
                   help="images per label and model in the picture (6)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of training and sampling (0)")
    p.add_argument("--retrain", action="store_true",
                   help="train again even where a finished model is in --runs")  # fmt: skip
    p.add_argument("--runs", default=str(RUNS), help="run folders (experiments/runs/cgan)")
    p.add_argument("--out", default=str(RESULTS), help="results folder (experiments/results)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke-test budget (1 s per model, 5 images per label, 1-epoch judge)")  # fmt: skip
    return p


class ConditionalGAN(nn.Module):
    """Generator G(z, y) and discriminator D(x, y), MLPs on [input, one-hot y].

    Args:
        image_shape: (C, H, W).
        num_classes: number of labels.
        noise_dim: width of z ~ N(0, I) (the CVAE's latent width).
        hidden_dims: hidden widths of G (the CVAE decoder's); D uses them reversed (the
            encoder's).
    """

    def __init__(self, image_shape, num_classes: int, noise_dim: int, hidden_dims):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.noise_dim = noise_dim
        x_dim = int(torch.tensor(self.image_shape).prod())
        self.generator = _mlp([noise_dim + num_classes, *hidden_dims, x_dim], nn.ReLU)
        self.discriminator = _mlp([x_dim + num_classes, *reversed(hidden_dims), 1],
                                  lambda: nn.LeakyReLU(0.2))  # fmt: skip

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in (0, 1) for noise z (B, noise_dim) and labels y (B,)."""
        h = torch.cat([z, F.one_hot(y, self.num_classes).to(z)], -1)
        return torch.sigmoid(self.generator(h)).reshape(-1, *self.image_shape)

    def critic(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Discriminator logits (B,) that x (B, C, H, W) is a real image of label y."""
        h = torch.cat([x.flatten(1), F.one_hot(y, self.num_classes).to(x)], -1)
        return self.discriminator(h).squeeze(-1)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, num_samples: int) -> torch.Tensor:
        """(M, num_samples, C, H, W) images for M labels."""
        y = labels.repeat_interleave(num_samples)
        x = self.generate(torch.randn(len(y), self.noise_dim), y)
        return x.reshape(len(labels), num_samples, *self.image_shape)


def _mlp(sizes, act) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def train_gan(gan: ConditionalGAN, data: Dataset, budget: float, batch_size: int, seed: int,
              clock=time.process_time):  # fmt: skip
    """Non-saturating GAN training on grey-level images until ``budget`` seconds of ``clock``
    have passed.

    Returns:
        ``{"seconds", "steps", "images_seen", "d_loss", "g_loss"}`` (losses: mean of the last
        100 steps).
    """
    torch.manual_seed(seed)
    x, y = data.train.x, data.train.y
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ones, zeros = torch.ones(batch_size), torch.zeros(batch_size)
    steps, d_hist, g_hist = 0, [], []
    order, pos = torch.randperm(len(x)), 0
    t0, w0 = clock(), time.perf_counter()
    while clock() - t0 < budget:
        if pos + batch_size > len(x):
            order, pos = torch.randperm(len(x)), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        real, labels = x[idx], y[idx]
        fake = gan.generate(torch.randn(batch_size, gan.noise_dim), labels)
        d_loss = F.binary_cross_entropy_with_logits(gan.critic(real, labels), ones) + (
            F.binary_cross_entropy_with_logits(gan.critic(fake.detach(), labels), zeros)
        )
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # non-saturating generator loss: -log D(G(z)) rather than log(1 - D(G(z)))
        g_loss = F.binary_cross_entropy_with_logits(gan.critic(fake, labels), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        steps += 1
        d_hist.append(d_loss.item())
        g_hist.append(g_loss.item())
    gan.eval()
    last = lambda h: sum(h[-100:]) / max(1, len(h[-100:]))  # noqa: E731
    return {"seconds": clock() - t0, "wall_seconds": time.perf_counter() - w0, "steps": steps,
            "images_seen": steps * batch_size, "d_loss": last(d_hist), "g_loss": last(g_hist)}  # fmt: skip


def train_cvae(model: CVAE, data: Dataset, run: Path, budget: float, batch_size: int, seed: int,
               clock=time.process_time):  # fmt: skip
    """:func:`pyro_cvae.fit` in pieces of at most :data:`CHUNK_SECONDS` (resumed from the run
    folder's checkpoint each time, optimizer state included) until ``budget`` seconds of
    ``clock`` have passed; the piece sizes follow the measured step rate so training stops near
    the budget.

    Returns:
        ``{"seconds", "steps", "images_seen", "train_loss"}`` (the last full epoch's loss per
        image, nats; None if no epoch finished).
    """
    config = TrainConfig(epochs=10**6, batch_size=batch_size, seed=seed, validate_every=0,
                         keep_checkpoints=1)  # fmt: skip
    steps, rate, history = 0, None, None
    t0, w0 = clock(), time.perf_counter()
    while (left := budget - (clock() - t0)) > 0:
        chunk = 20 if rate is None else max(1, int(min(left, CHUNK_SECONDS) * rate))
        t1 = clock()
        history = fit(model, data, config, out=run, resume=steps > 0, overwrite=steps == 0,
                      progress=False, stop_after_steps=chunk)  # fmt: skip
        rate = chunk / max(clock() - t1, 1e-6)
        steps += chunk
    model.eval()
    loss = history.rows[-1]["train_loss"] if history is not None and history.rows else None
    return {"seconds": clock() - t0, "wall_seconds": time.perf_counter() - w0, "steps": steps,
            "images_seen": steps * batch_size, "train_loss": loss}  # fmt: skip


def _finished(run: Path, settings: dict) -> dict | None:
    path = run / "finished.json"
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    return done if done.get("settings") == settings else None


def get_model(name: str, args, data: Dataset, grey: Dataset, run: Path):
    """The trained model ``name`` and its training record: reused from ``run`` when a finished
    run with the same settings is there (and not ``--retrain``), else trained now."""
    cfg = ModelConfig.for_data(data)
    settings = {"dataset": args.dataset, "budget": args.budget, "clock": args.clock,
                "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads,
                "model": cfg.to_dict()}  # fmt: skip
    settings = json.loads(json.dumps(settings))  # as read back from finished.json (lists)
    done = None if args.retrain else _finished(run, settings)
    run.mkdir(parents=True, exist_ok=True)
    if done is None:  # an unfinished or other run: trained again from the start
        (run / "finished.json").unlink(missing_ok=True)
    load_before = os.getloadavg()  # the machine may be shared: recorded with the run
    if name == "cvae":
        if done is not None:
            return pyro_cvae.load(run), {**done["train"], "reused": True}
        torch.manual_seed(args.seed)
        model = CVAE(cfg)
        record = train_cvae(model, data, run, args.budget, args.batch_size, args.seed,
                            CLOCKS[args.clock])  # fmt: skip
    else:
        torch.manual_seed(args.seed)
        model = ConditionalGAN(data.image_shape, data.num_classes, cfg.latent_dim,
                               cfg.hidden_dims)  # fmt: skip
        if done is not None:
            model.load_state_dict(torch.load(run / "gan.pt", weights_only=True))
            return model.eval(), {**done["train"], "reused": True}
        record = train_gan(model, grey, args.budget, args.batch_size, args.seed,
                           CLOCKS[args.clock])  # fmt: skip
        torch.save(model.state_dict(), run / "gan.pt")
    record.update(load_before=list(load_before), load_after=list(os.getloadavg()))
    (run / "finished.json").write_text(json.dumps({"settings": settings, "train": record}))
    return model, {**record, "reused": False}


def per_label(split, num_classes: int, n: int) -> torch.Tensor:
    """The first n images of every label, (C, n, ...)."""
    return torch.stack([split.x[split.y == c][:n] for c in range(num_classes)])


def claims(m: dict) -> list[dict]:
    """The blog post's three claims, each judged from the measured numbers."""
    cvae, gan = m["cvae"], m["gan"]
    n = cvae["num_images"]
    out = []
    # sharper: both proxies must agree
    sharper = gan["binariness"] > cvae["binariness"] and gan["midtone_fraction"] < cvae[
        "midtone_fraction"]  # fmt: skip
    blurrier = gan["binariness"] < cvae["binariness"] and gan["midtone_fraction"] > cvae[
        "midtone_fraction"]  # fmt: skip
    out.append({
        "claim": "GAN samples are sharper",
        "verdict": "supported" if sharper else ("contradicted" if blurrier else "undecided"),
        "evidence": f"binariness GAN {gan['binariness']:.3f} vs CVAE {cvae['binariness']:.3f}; "
                    f"mid-tone pixels GAN {gan['midtone_fraction']:.3f} vs CVAE "
                    f"{cvae['midtone_fraction']:.3f} (real test images "
                    f"{m['real']['binariness']:.3f}, {m['real']['midtone_fraction']:.3f})",
    })  # fmt: skip
    # controllable: a difference beyond two binomial standard errors of the difference
    a, b = cvae["control_score"], gan["control_score"]
    se = ((a * (1 - a) + b * (1 - b)) / n) ** 0.5
    verdict = "supported" if a - b > 2 * se else ("contradicted" if b - a > 2 * se else
                                                   "undecided (within 2 standard errors)")  # fmt: skip
    out.append({
        "claim": "the CVAE is more controllable",
        "verdict": verdict,
        "evidence": f"control score CVAE {a:.3f} vs GAN {b:.3f} (2 s.e. of the difference "
                    f"{2 * se:.3f}; the judge scores {cvae['judge_test_accuracy']:.3f} on real "
                    "test images)",
    })  # fmt: skip
    # diverse: higher on average and in most labels
    wins = sum(c > g for c, g in zip(cvae["per_class_diversity"], gan["per_class_diversity"]))
    k = len(cvae["per_class_diversity"])
    more, less = cvae["diversity"] > gan["diversity"], cvae["diversity"] < gan["diversity"]
    verdict = ("supported" if more and wins > k / 2 else
               "contradicted" if less and wins < k / 2 else "undecided")  # fmt: skip
    out.append({
        "claim": "the CVAE is more diverse",
        "verdict": verdict,
        "evidence": f"within-label diversity CVAE {cvae['diversity']:.3f} vs GAN "
                    f"{gan['diversity']:.3f}, CVAE higher in {wins} of {k} labels (real test "
                    f"images {m['real']['diversity']:.3f})",
    })  # fmt: skip
    return out


def picture(images: dict, path: Path, columns: int) -> None:
    """Rows: labels; blocks of ``columns``: real test images | CVAE | GAN, white between."""
    real = images["real"][:, :columns]
    blank = torch.ones_like(real[:, :1])
    rows = torch.cat([real, blank, images["cvae"][:, :columns], blank,
                      images["gan"][:, :columns]], 1)  # (C, 3 k + 2, 1, H, W)  # fmt: skip
    plots.image_grid(rows.flatten(0, 1), nrow=rows.shape[1],
                     title="real test images  |  CVAE (Bernoulli means)  |  conditional GAN",
                     row_labels=[str(c) for c in range(rows.shape[0])], path=path)  # fmt: skip


def _clock_words(budget: dict) -> str:
    return "CPU-time" if budget.get("clock", "wall") == "cpu" else "wall-clock"


def _wall(record: dict) -> str:
    """The elapsed time beside a CPU-time budget (absent from wall-clock runs)."""
    w = record.get("wall_seconds")
    return "" if w is None or abs(w - record["seconds"]) < 1 else f" ({w:.0f} s elapsed)"


def write_markdown(result: dict, path: Path) -> None:
    b, m = result["budget"], result["metrics"]
    tr = result["training"]
    rows = [
        ("control score (judge labels as requested; higher)", "control_score", "{:.3f}"),
        ("Fréchet distance to test images, judge features (lower)", "frechet_distance",
         "{:.2f}"),
        ("within-label diversity, judge features (higher)", "diversity", "{:.3f}"),
        ("binariness, mean abs(2x - 1) (higher: sharper)", "binariness", "{:.3f}"),
        ("mid-tone pixel fraction, 0.1 < x < 0.9 (lower: sharper)", "midtone_fraction", "{:.3f}"),
    ]  # fmt: skip
    lines = [
        f"# CVAE versus a conditional GAN at equal training time ({b['dataset']})",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Budget: {b['budget']:g} s of {_clock_words(b)} training per model on {b['threads']} "
        f"CPU thread(s), batch {b['batch_size']}, seed {b['seed']}; CVAE {tr['cvae']['steps']} "
        f"steps ({tr['cvae']['images_seen'] / b['train_images']:.1f} epochs) in "
        f"{tr['cvae']['seconds']:.0f} s{_wall(tr['cvae'])}, GAN {tr['gan']['steps']} steps "
        f"({tr['gan']['images_seen'] / b['train_images']:.1f} epochs) in "
        f"{tr['gan']['seconds']:.0f} s{_wall(tr['gan'])}. The machine (2 cores) was shared with "
        f"other jobs (1-minute load average {tr['cvae']['load_before'][0]:.2f} -> "
        f"{tr['cvae']['load_after'][0]:.2f} while the CVAE trained, "
        f"{tr['gan']['load_before'][0]:.2f} -> {tr['gan']['load_after'][0]:.2f} while the GAN "
        "did)"
        + (
            ": CPU time is what each model actually ran, so the sharing does not change the "
            "budgets' fairness, only how long they took. "
            if b.get("clock", "wall") == "cpu"
            else ", so a step took longer than on an idle machine and the two budgets bought "
            "slightly different shares of the CPU. "
        )
        + "Written by `experiments/cgan.py`"
        + (
            " (the trained models were reused from an earlier run with the same settings)."
            if any(t.get("reused") for t in tr.values())
            else "."
        ),  # fmt: skip
        "",
        f"Models, same MLP sizes: the library's CVAE (latent {b['latent_dim']}, hidden "
        f"{b['hidden']}, ELBO, Adam 1e-3, dynamically binarised images) and a conditional GAN in "
        f"plain PyTorch (noise {b['latent_dim']} + one-hot -> {b['hidden']} -> sigmoid pixels; "
        "discriminator image + one-hot -> same widths -> logit; non-saturating loss, Adam 2e-4, "
        "betas (0.5, 0.999), grey-level images). CVAE samples are the decoder's Bernoulli "
        "means with z from the prior (a Bernoulli draw would be binary but speckled); GAN "
        "samples are the generator's output.",
        "",
        f"Metrics on {b['per_label']} images per label ({10 * b['per_label']} per model), read "
        "by our own MLP judge classifier of real images (penultimate layer, 256 features; "
        f"accuracy {m['cvae']['judge_test_accuracy']:.3f} on the real test images). The "
        f"Fréchet distance is to all {b['test_images']} test images; "
        f"{10 * b['per_label']} real validation images give its floor at this sample size.",
        "",
        "| metric | CVAE | GAN | real images |",
        "|---|---|---|---|",
    ]
    for name, key, fmt in rows:
        real = m["real"].get(key)
        lines.append(f"| {name} | {fmt.format(m['cvae'][key])} | {fmt.format(m['gan'][key])} | "
                     f"{fmt.format(real) if real is not None else '-'} |")  # fmt: skip
    lines += [
        "",
        "Real images: the control score is the judge's accuracy on all test images; the "
        "Fréchet distance is that of the same count of validation images (which the judge "
        "never saw) to the test images, the floor any generator is measured against at this "
        "sample size; diversity and sharpness are those of test images.",
        "",
        "How to read the proxies: sharpness reads pixel values only, so isolated saturated "
        "speckle counts as sharp (look at the picture too); diversity is over all images "
        "generated for a label, so images of the wrong digit add to it (compare with the "
        "control score and with the real images' diversity).",
        "",
        "## The blog post's claims",
        "",
    ]
    for c in result["claims"]:
        lines.append(f"- **{c['claim']}**: {c['verdict']}. {c['evidence']}.")
    fid = "CVAE" if m["cvae"]["frechet_distance"] < m["gan"]["frechet_distance"] else "GAN"
    lines += [
        "",
        f"Closer to the real images in the judge's features (lower Fréchet distance): {fid} "
        f"({m['cvae']['frechet_distance']:.2f} CVAE, {m['gan']['frechet_distance']:.2f} GAN, "
        f"floor {m['real']['frechet_distance']:.2f}). One seed, one budget: the verdicts hold "
        "for this budget only; a GAN's numbers in particular move with training time.",
        "",
        "Per label (control score / diversity):",
        "",
        "| label | CVAE control | GAN control | CVAE diversity | GAN diversity | real diversity |",
        "|---|---|---|---|---|---|",
    ]
    for c in range(len(m["cvae"]["per_class"])):
        lines.append(
            f"| {c} | {m['cvae']['per_class'][c]:.3f} | {m['gan']['per_class'][c]:.3f} | "
            f"{m['cvae']['per_class_diversity'][c]:.3f} | "
            f"{m['gan']['per_class_diversity'][c]:.3f} | "
            f"{m['real']['per_class_diversity'][c]:.3f} |"
        )
    lines += ["", f"![real, CVAE and GAN samples per label]({path.stem}.png)", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.tiny:
        args.budget, args.per_label, args.columns = 1.0, 5, 3
    if args.per_label < 2:
        raise SystemExit(f"--per-label must be at least 2 (diversity needs pairs), got "
                         f"{args.per_label}")  # fmt: skip
    torch.set_num_threads(args.threads)
    out, runs = Path(args.out), Path(args.runs) / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset)  # dynamically binarised for the CVAE
    grey = load_dataset(args.dataset, binarize="none")  # grey levels for the GAN and the judge
    judge = (train_classifier(grey, epochs=1, cache=False) if args.tiny
             else train_classifier(grey))  # fmt: skip
    models, training = {}, {}
    for name in MODELS:
        models[name], training[name] = get_model(name, args, data, grey, runs / name)
        print(json.dumps({name: training[name]}), flush=True)

    labels = torch.arange(grey.num_classes)
    images, metrics = {}, {}
    for name in MODELS:
        torch.manual_seed(args.seed + 1)
        with torch.no_grad():
            images[name] = models[name].sample(labels, args.per_label).cpu()  # (C, n, 1, H, W)
        metrics[name] = sample_quality(images[name], grey, classifier=judge)
        print(json.dumps({name: {k: v for k, v in metrics[name].items()
                                 if not k.startswith("per_class")}}), flush=True)  # fmt: skip
    # references from real images: the same count of validation images (unseen by the judge)
    # give the Fréchet floor; test images the diversity and sharpness
    floor = sample_quality(per_label(grey.val, grey.num_classes, args.per_label), grey,
                           classifier=judge)  # fmt: skip
    images["real"] = per_label(grey.test, grey.num_classes, args.per_label)
    n_test = images["real"].shape[1]
    test_feats = classifier_features(judge, images["real"].flatten(0, 1))
    real_div = within_label_diversity(test_feats,
                                      labels.repeat_interleave(n_test))  # fmt: skip
    metrics["real"] = {
        "control_score": floor["judge_test_accuracy"],
        "frechet_distance": floor["frechet_distance"],
        "diversity": real_div.mean().item(),
        "per_class_diversity": real_div.tolist(),
        **sharpness(images["real"]),
        "images_per_label": n_test,
    }
    # (the Fréchet distance of two disjoint real sets is the floor; sanity: real test vs itself)
    assert frechet_distance(test_feats, test_feats) < 1e-6

    stem = "cgan_tiny" if args.tiny else "cgan"
    cfg = models["cvae"].config
    result = {
        "command": shlex.join(["python", "experiments/cgan.py",
                               *(sys.argv[1:] if argv is None else argv)]),  # fmt: skip
        "budget": {
            "dataset": args.dataset, "budget": args.budget, "clock": args.clock,
            "threads": args.threads,
            "batch_size": args.batch_size, "seed": args.seed, "per_label": args.per_label,
            "latent_dim": cfg.latent_dim, "hidden": list(cfg.hidden_dims),
            "train_images": len(grey.train), "test_images": len(grey.test),
            "tiny": args.tiny,
        },
        "training": training,
        "metrics": metrics,
    }  # fmt: skip
    result["claims"] = claims(metrics)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out / f"{stem}.md")
    picture(images, out / f"{stem}.png", args.columns)
    for c in result["claims"]:
        print(f"{c['claim']}: {c['verdict']} ({c['evidence']})")
    return result


if __name__ == "__main__":
    main()
