"""Throughput and peak memory of ``log_likelihood`` at K = 5000, and this machine's matmul rate.

Peak memory is the growth of the process's resident set during each evaluation: on Linux the
peak (VmHWM) is reset before the call through /proc/self/clear_refs and read after it; elsewhere
the growth of the lifetime maximum (ru_maxrss) is reported. Evaluating 4x as many images must not
raise it: memory is bounded by the chunk size, not by the data. One more row evaluates with the
old, larger chunk (2^25 floats) to show what the chunk size costs in time and memory.
"""

from __future__ import annotations

import resource
import time
from functools import partial

import torch

import pyro_cvae as pc
from benchmarks.common import sync
from pyro_cvae.evaluate import DEFAULT_MAX_FLOATS


def matmul_gflops(n: int = 2048, repeats: int = 10, device="cpu") -> float:
    """fp32 matrix-multiply rate of this machine (GFLOP/s), best of ``repeats``."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def peak_memory_growth(fn, device="cpu") -> tuple[object, float]:
    """Run ``fn()``; return its result and the peak growth of memory (MiB) during it: resident
    memory on the CPU, allocated GPU memory on a CUDA device."""
    if torch.device(device).type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        sync(device)
        return out, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        base = _status_mib("VmRSS")
        out = fn()
        return out, _status_mib("VmHWM") - base
    except OSError:  # no /proc: the lifetime peak is the best we have
        base = _max_rss_mib()
        out = fn()
        return out, _max_rss_mib() - base


def eval_flops_per_particle(model) -> int:
    """Multiply-adds of one encoder+decoder pass per particle, times two (FLOPs)."""
    macs = 0
    for m in model.decoder.modules():
        if isinstance(m, torch.nn.Linear):
            macs += m.in_features * m.out_features
    return 2 * macs


def run(dataset="mnist", num_samples=5000, images=(50, 200), hidden=(400,), latent=50, rate=None,
        device="cpu", log=print):  # fmt: skip
    data = pc.load_dataset(dataset, binarize="dynamic")
    test = data.eval_split("test").to(device)
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=data.image_shape, num_classes=data.num_classes,
                    latent_dim=latent, hidden_dims=hidden).eval().to(device)  # fmt: skip
    if rate is None:
        rate = matmul_gflops(device=device)
        log(f"matmul rate: {rate:.1f} GFLOP/s (fp32, 2048x2048)")
    rows = []
    for n, chunk in [(n, DEFAULT_MAX_FLOATS) for n in images] + [(images[0], 2**25)]:
        t0 = time.perf_counter()
        call = partial(pc.log_likelihood, model, test.x[:n], test.y[:n], num_samples,
                       max_floats=chunk)  # fmt: skip
        _, growth = peak_memory_growth(call, device)
        dt = time.perf_counter() - t0
        flops = n * num_samples * eval_flops_per_particle(model)
        row = {"images": n, "max_floats": chunk, "seconds": dt, "images_per_s": n / dt,
               "gflops": flops / dt / 1e9, "fraction_of_matmul": flops / dt / 1e9 / rate,
               "peak_growth_mib": growth}  # fmt: skip
        rows.append(row)
        log(f"log_likelihood K={num_samples}, {n} images, chunk 2^{chunk.bit_length() - 1}: "
            f"{row['images_per_s']:.1f} images/s, {row['gflops']:.1f} GFLOP/s "
            f"({100 * row['fraction_of_matmul']:.0f}% of matmul), peak memory growth "
            f"{growth:.0f} MiB")  # fmt: skip
    return rate, rows
