"""Throughput and peak memory of ``log_likelihood`` at K = 5000, and this machine's matmul rate.

Peak memory is read as the growth of the process's maximum resident set size: evaluating 4x as
many images must not raise it (memory is bounded by the chunk size, not by the data).
"""

from __future__ import annotations

import resource
import time

import torch

import pyro_cvae as pc


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 matrix-multiply rate of this machine (GFLOP/s), best of ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eval_flops_per_particle(model) -> int:
    """Multiply-adds of one encoder+decoder pass per particle, times two (FLOPs)."""
    macs = 0
    for m in model.decoder.modules():
        if isinstance(m, torch.nn.Linear):
            macs += m.in_features * m.out_features
    return 2 * macs


def run(dataset="mnist", num_samples=5000, images=(50, 200), hidden=(400,), latent=50, log=print):
    data = pc.load_dataset(dataset, binarize="dynamic")
    test = data.eval_split("test")
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=data.image_shape, num_classes=data.num_classes,
                    latent_dim=latent, hidden_dims=hidden).eval()  # fmt: skip
    rate = matmul_gflops()
    log(f"matmul rate: {rate:.1f} GFLOP/s (fp32, 2048x2048)")
    rows = []
    base = _max_rss_mib()
    for n in images:
        t0 = time.perf_counter()
        pc.log_likelihood(model, test.x[:n], test.y[:n], num_samples)
        dt = time.perf_counter() - t0
        flops = n * num_samples * eval_flops_per_particle(model)
        row = {"images": n, "seconds": dt, "images_per_s": n / dt,
               "gflops": flops / dt / 1e9, "fraction_of_matmul": flops / dt / 1e9 / rate,
               "max_rss_growth_mib": _max_rss_mib() - base}  # fmt: skip
        rows.append(row)
        log(f"log_likelihood K={num_samples}, {n} images: {row['images_per_s']:.1f} images/s, "
            f"{row['gflops']:.1f} GFLOP/s ({100 * row['fraction_of_matmul']:.0f}% of matmul), "
            f"peak RSS growth {row['max_rss_growth_mib']:.0f} MiB")  # fmt: skip
    return rate, rows
