"""Small files for the data tests: PNGs, an image folder, an attribute folder, a table of people.

Imported by the tests of ``pyro_cvae.data.files`` and ``pyro_cvae.data.stream`` (each file keeps
its own sizes); every builder is seeded, so two calls write the same bytes.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def write_png(path, size=(6, 6), mode="L", seed=0) -> None:
    """A random ``size = (width, height)`` image in ``mode`` ("L" or "RGB"), format from suffix."""
    rng = np.random.default_rng(seed)
    shape = size[::-1] + ((3,) if mode == "RGB" else ())
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(path)


def image_folder(root: Path, per_class: int, seed_step: int) -> Path:
    """Two classes ``cat/`` and ``dog/`` of ``per_class`` 6x6 grey PNGs each under ``root``."""
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            write_png(root / name / f"{i}.png", seed=seed_step * k + i)
    return root


def attribute_folder(root: Path, n: int, suffix: str) -> Path:
    """``n`` RGB 6x6 images ``im{i}{suffix}`` and ``attributes.csv`` (file, smiling -1/1, hair,
    age) under ``root``."""
    root.mkdir()
    rows = []
    for i in range(n):
        write_png(root / f"im{i}{suffix}", mode="RGB", seed=i)
        rows.append({"file": f"im{i}{suffix}", "smiling": [-1, 1][i % 2],
                     "hair": ["black", "blond", "red"][i % 3], "age": 20 + i})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "attributes.csv", index=False)
    return root


def people(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of age (int), height (real), smoker, city and income (categories)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(20, 60, n), "height": rng.normal(170, 10, n),
        "smoker": rng.choice(["yes", "no"], n), "city": rng.choice(["a", "b", "c"], n),
        "income": rng.choice(["low", "high"], n),
    })  # fmt: skip
