"""Molecules as token sequences with property conditions: the MOSES benchmark, offline.

A molecule is stored three ways:

* its SMILES string, kept for metrics (validity, uniqueness, novelty);
* its SELFIES tokens [1] (every token string decodes to a valid molecule), as a row of integer
  ids ``x`` of shape (L,): the tokens, one ``<end>`` token, then ``<pad>`` up to ``L``;
* its properties computed with RDKit (:data:`PROPERTIES`: logP, QED, molecular weight, TPSA and
  the synthetic-accessibility score of Ertl and Schuffenhauer [2] from RDKit's contrib), as the
  condition ``y`` of shape (P,): each property standardised to [0, 1] over the training subset's
  range by an :class:`~pyro_cvae.data.attributes.AttributeSchema` of
  :class:`~pyro_cvae.data.attributes.Continuous` attributes, so ``logp=2.5,qed=0.8`` parses.

:func:`load_moses` draws a seeded subset of the MOSES training SMILES [3] (the ``molsets``
package ships them: ``pip install --no-deps molsets``; the ``moses`` package itself is never
imported, it pulls in heavy metric code) and validation and test molecules from its test file,
computes the properties once per subset with a progress bar and caches them under
:func:`~pyro_cvae.data.default_data_dir`. RDKit and SELFIES are optional dependencies (the
``molecules`` extra), imported only when used.

References:
    [1] Krenn et al., Self-referencing embedded strings (SELFIES): a 100% robust molecular string
        representation, Machine Learning: Science and Technology 2020.
    [2] Ertl and Schuffenhauer, Estimation of synthetic accessibility score of drug-like
        molecules, Journal of Cheminformatics 2009.
    [3] Polykovskiy et al., Molecular Sets (MOSES): a benchmarking platform for molecular
        generation models, Frontiers in Pharmacology 2020.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .attributes import AttributeSchema, Continuous
from .core import Dataset, Split, default_data_dir

__all__ = [
    "PROPERTIES",
    "SPECIAL_TOKENS",
    "PAD",
    "END",
    "START",
    "UNK",
    "MOLECULE_DATASETS",
    "Vocabulary",
    "is_molecule_data",
    "load_moses",
    "moses_file",
    "moses_statistics",
    "read_smiles_csv",
    "canonical_smiles",
    "molecule_properties",
    "property_schema",
    "encode_properties",
    "property_columns",
    "smiles_to_tokens",
    "draw_molecules",
    "read_molecules",
    "split_smiles",
]

#: properties computed for every molecule, in the order of the condition vector
PROPERTIES = ("logp", "qed", "mw", "tpsa", "sa")
#: token ids reserved in every vocabulary: padding, end of molecule, decoder start, unknown
SPECIAL_TOKENS = ("<pad>", "<end>", "<start>", "<unk>")
PAD, END, START, UNK = range(4)
#: subsets are drawn with this seed, independent of the training seed, so that a run's data can
#: be rebuilt from its config.json and test numbers stay comparable across seeds
SUBSET_SEED = 0
_CACHE_VERSION = 1


def _require(module: str):
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = "rdkit" if module.startswith("rdkit") else module
        raise ImportError(
            f"molecules need the optional package {package!r}; install it with "
            "`pip install 'pyro_cvae[molecules]'` (or `pip install rdkit selfies`)"
        ) from None


def moses_file(split: str) -> Path:
    """The ``train.csv.gz`` / ``test.csv.gz`` shipped in the ``molsets`` package, by path."""
    if split not in ("train", "test"):
        raise ValueError(f"MOSES ships the splits 'train' and 'test', got {split!r}")
    spec = importlib.util.find_spec("moses")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "dataset" / "data" / f"{split}.csv.gz"
        if path.exists():
            return path
    raise FileNotFoundError(
        "the MOSES data set is not installed; install it with `pip install --no-deps molsets` "
        "(it ships moses/dataset/data/train.csv.gz and test.csv.gz)"
    )


def moses_statistics(split: str = "test") -> dict:
    """MOSES's precomputed statistics of its ``"test"`` or ``"test_scaffolds"`` set, shipped in
    the ``molsets`` package (``<split>_stats.npz``): ``{"FCD": {"mu", "sigma"}, "SNN": {"fps"},
    "Frag": {"frag"}, "Scaf": {"scaf"}, ...}``, the references of MOSES's ``get_all_metrics``
    (ChemNet activations' mean and covariance, Morgan fingerprints, BRICS fragment and scaffold
    counts of all 176,074 test molecules)."""
    if split not in ("test", "test_scaffolds"):
        raise ValueError(f"MOSES ships statistics of 'test' and 'test_scaffolds', got {split!r}")
    path = moses_file("test").parent / f"{split}_stats.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; reinstall the MOSES data with `pip install --no-deps molsets`"
        )
    # the file is a pickled dict inside the installed package (Counter objects for Frag and Scaf)
    return np.load(path, allow_pickle=True)["stats"].item()


def read_smiles_csv(path: str | Path, column: str = "SMILES") -> list[str]:
    """The ``column`` of a CSV file (gzipped or not; the column name in any case), one SMILES
    per row, in file order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        folded = [h.strip().lower() for h in header or []]
        if column.lower() not in folded:  # `pyro-cvae sample` writes "smiles", MOSES "SMILES"
            raise ValueError(
                f"{path} has no column {column!r} (its header is {header}); give a CSV whose "
                f"first line names a {column!r} column (in any case)"
            )
        i = folded.index(column.lower())
        return [row[i].strip() if len(row) > i else "" for row in reader]


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES of a molecule, or ``None`` when RDKit cannot parse it."""
    Chem = _require("rdkit.Chem")
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() else None


def _sa_scorer():
    """RDKit's contrib SA score module, or ``None`` when this RDKit build does not ship it."""
    RDConfig = _require("rdkit.RDConfig")
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("pyro_cvae_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def molecule_properties(smiles: Sequence[str], *, progress: bool = True) -> np.ndarray:
    """RDKit properties (:data:`PROPERTIES`) of each molecule: shape (N, 5), NaN where RDKit
    cannot parse a SMILES (and in the ``sa`` column when RDKit's contrib lacks the SA score)."""
    Chem = _require("rdkit.Chem")
    Descriptors = _require("rdkit.Chem.Descriptors")
    QED = _require("rdkit.Chem.QED")
    RDLogger = _require("rdkit.RDLogger")
    RDLogger.DisableLog("rdApp.*")  # unparsable SMILES are reported as NaN, not on stderr
    sa = _sa_scorer()
    out = np.full((len(smiles), len(PROPERTIES)), np.nan)
    for i, s in enumerate(tqdm(smiles, desc="RDKit properties", disable=not progress)):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is None or not mol.GetNumAtoms():
            continue
        out[i, :4] = (Descriptors.MolLogP(mol), QED.qed(mol), Descriptors.MolWt(mol),
                      Descriptors.TPSA(mol))  # fmt: skip
        if sa is not None:
            out[i, 4] = sa.calculateScore(mol)
    return out


def smiles_to_tokens(smiles: str) -> list[str]:
    """The SELFIES tokens of a SMILES string (``ValueError`` when SELFIES cannot encode it)."""
    sf = _require("selfies")
    try:
        text = sf.encoder(smiles)
    except sf.EncoderError as e:
        raise ValueError(f"SELFIES cannot encode {smiles!r}: {e}") from None
    if text is None:
        raise ValueError(f"SELFIES cannot encode {smiles!r}")
    return list(sf.split_selfies(text))


class Vocabulary:
    """SELFIES tokens <-> integer ids; the ids of :data:`SPECIAL_TOKENS` come first.

    ``encode`` writes each molecule as its tokens, one ``<end>`` and ``<pad>`` up to the
    length; ``decode`` reads ids back to SMILES (up to the first ``<end>`` or ``<pad>``).
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = tuple(tokens)
        if tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            tokens = SPECIAL_TOKENS + tuple(t for t in tokens if t not in SPECIAL_TOKENS)
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"a vocabulary lists each token once, got {tokens}")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> Vocabulary:
        """The vocabulary of a training set: its tokens, sorted, after the special ones."""
        return cls(SPECIAL_TOKENS + tuple(sorted({t for ts in token_lists for t in ts})))

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        return [t for t in tokens if t not in self.index]

    def encode(self, token_lists: Sequence[Sequence[str]], length: int) -> torch.Tensor:
        """Token lists -> ids (N, length): tokens, ``<end>``, ``<pad>``...; unknown tokens and
        molecules longer than ``length - 1`` are refused (``ValueError`` naming the row)."""
        out = torch.full((len(token_lists), length), PAD, dtype=torch.long)
        for i, ts in enumerate(token_lists):
            bad = self.unknown(ts)
            if bad:
                raise ValueError(f"row {i}: token(s) {bad} are not in the model's vocabulary")
            if len(ts) > length - 1:
                raise ValueError(f"row {i}: {len(ts)} tokens, longer than the model's {length - 1}")
            out[i, : len(ts)] = torch.tensor([self.index[t] for t in ts], dtype=torch.long)
            out[i, len(ts)] = END
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Ids (..., L) -> SMILES strings (flattened over leading dims); ``""`` when empty."""
        sf = _require("selfies")
        out = []
        for row in ids.reshape(-1, ids.shape[-1]).tolist():
            tokens = []
            for t in row:
                if t in (END, PAD):
                    break
                if t >= len(SPECIAL_TOKENS):
                    tokens.append(self.tokens[t])
            try:
                out.append(sf.decoder("".join(tokens)) or "")
            except sf.DecoderError:
                out.append("")
        return out


def property_schema(props: np.ndarray, names: Sequence[str] = PROPERTIES) -> AttributeSchema:
    """Continuous attributes spanning the range of each property column (rounded outwards)."""
    attrs = []
    for j, name in enumerate(names):
        col = props[:, j][np.isfinite(props[:, j])]
        low, high = float(np.floor(col.min() * 100) / 100), float(np.ceil(col.max() * 100) / 100)
        attrs.append(
            Continuous(name, low, high if high > low else low + 1.0, float(np.median(col)))
        )
    return AttributeSchema(attrs)


def property_columns(props: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The columns ``names`` of properties in :data:`PROPERTIES` order, (N, 5) -> (N, len(names))."""
    return props[:, [PROPERTIES.index(n) for n in names]]


def encode_properties(props: np.ndarray, schema: AttributeSchema) -> torch.Tensor:
    """Property values (N, P) -> condition vectors (N, P), each mapped by its attribute's
    ``(v - low) / (high - low)``; values outside the range are not refused (held-out molecules)."""
    low = np.array([a.low for a in schema.attributes])
    high = np.array([a.high for a in schema.attributes])
    return torch.tensor((props - low) / (high - low), dtype=torch.get_default_dtype())


@functools.lru_cache(maxsize=2)
def _moses_smiles(split: str) -> tuple[str, ...]:
    return tuple(read_smiles_csv(moses_file(split)))


def _cached_subset(
    split: str, size: int, offset: int, data_dir: Path, progress: bool
) -> tuple[list[str], np.ndarray]:
    """``size`` SMILES of a MOSES file (a seeded permutation, from ``offset``) and their
    properties, computed once and cached as JSON under ``data_dir / "moses"``."""
    folder = data_dir / "moses"
    path = folder / f"{split}-{SUBSET_SEED}-{offset}-{size}-v{_CACHE_VERSION}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        return cached["smiles"], np.array(cached["properties"], dtype=float).reshape(-1, 5)
    all_smiles = _moses_smiles(split)
    if offset + size > len(all_smiles):
        raise ValueError(
            f"MOSES {split} has {len(all_smiles)} molecules; asked for {size} from {offset}; "
            "choose a smaller --train-size"
        )
    order = np.random.default_rng(SUBSET_SEED).permutation(len(all_smiles))
    smiles = [all_smiles[i] for i in order[offset : offset + size]]
    props = molecule_properties(smiles, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    props_list = [[None if not np.isfinite(v) else float(v) for v in row] for row in props]
    tmp.write_text(json.dumps({"smiles": smiles, "properties": props_list}))
    tmp.replace(path)
    return smiles, props


def load_moses(
    train_size: int | None = None,
    *,
    eval_size: int | None = None,
    data_dir: str | Path | None = None,
    properties: Sequence[str] | str | None = None,
    progress: bool = True,
) -> Dataset:
    """MOSES molecules as a :class:`~pyro_cvae.data.Dataset` of SELFIES ids and properties.

    Args:
        train_size: molecules drawn (seeded, :data:`SUBSET_SEED`) from MOSES's training file
            (default 100,000).
        eval_size: molecules in each of the validation and test splits, drawn from MOSES's test
            file (default ``train_size // 10``, at least 100 and at most 10,000).
        data_dir: cache folder (default :func:`~pyro_cvae.data.default_data_dir`).
        properties: the properties that form the condition, a subset of :data:`PROPERTIES` in
            any order (a list or ``"logp,qed"``; default all that RDKit computes here), e.g.
            ``["logp"]`` for a model conditioned on logP alone.

    Returns:
        a Dataset whose splits hold ``x`` (N, L) token ids and ``y`` (N, P) conditions (P
        properties), its ``schema`` the property attributes, and ``meta`` the vocabulary
        (``tokens``), the properties (``condition``) and the number of held-out molecules dropped (``dropped``: a token the training subset never
        shows, or longer than its longest molecule). :func:`split_smiles` gives the SMILES.
    """
    if isinstance(properties, str):
        properties = [p.strip() for p in properties.split(",") if p.strip()]
    if properties is not None:
        unknown = [p for p in properties if p not in PROPERTIES]
        if unknown or not properties or len(set(properties)) < len(properties):
            raise ValueError(
                f"properties (--condition) must be distinct names of {list(PROPERTIES)}, got "
                f"{list(properties)}; e.g. --condition logp"
            )
    train_size = 100_000 if train_size is None else int(train_size)
    if train_size < 10:
        raise ValueError(f"train_size must be at least 10 molecules, got {train_size}")
    eval_size = min(10_000, max(100, train_size // 10)) if eval_size is None else int(eval_size)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    parts = {
        "train": _cached_subset("train", train_size, 0, data_dir, progress),
        "val": _cached_subset("test", eval_size, 0, data_dir, progress),
        "test": _cached_subset("test", eval_size, eval_size, data_dir, progress),
    }
    tokens, keep = {}, {}
    for name, (smiles, props) in parts.items():
        toks = []
        for s, ok in zip(smiles, np.isfinite(props[:, :4]).all(1)):
            try:
                toks.append(smiles_to_tokens(s) if ok else None)
            except ValueError:
                toks.append(None)
        tokens[name] = toks
        keep[name] = [t is not None for t in toks]
    train_tokens = [t for t in tokens["train"] if t is not None]
    vocab = Vocabulary.build(train_tokens)
    length = max(len(t) for t in train_tokens) + 1  # room for <end>
    for name in ("val", "test"):
        keep[name] = [
            t is not None and not vocab.unknown(t) and len(t) < length for t in tokens[name]
        ]
    names = PROPERTIES
    if np.isnan(parts["train"][1][:, -1]).all():  # this RDKit ships no SA score: leave it out
        names = PROPERTIES[:-1]
        if properties is not None and "sa" in properties:
            raise ValueError(
                "this RDKit ships no synthetic accessibility (SA) score: drop sa from the "
                "properties (--condition)"
            )
    names = tuple(properties) if properties is not None else names
    parts = {k: (s, property_columns(p, names)) for k, (s, p) in parts.items()}
    train_props = parts["train"][1][np.array(keep["train"])]
    schema = property_schema(train_props, names)
    splits, dropped = {}, {}
    for name, (_smiles, props) in parts.items():
        k = np.array(keep[name], dtype=bool)
        dropped[name] = int((~k).sum())
        x = vocab.encode([t for t, ok in zip(tokens[name], k) if ok], length)
        splits[name] = Split(x, encode_properties(props[k], schema))
    return Dataset(
        name="moses",
        **splits,
        image_shape=(length,),  # type: ignore[arg-type]  # one token row per molecule
        num_classes=0,
        class_names=(),
        binarize="none",
        meta={"source": str(moses_file("train").parent), "train_size": train_size,
              "tokens": list(vocab.tokens), "dropped": dropped, "condition": list(names)},
        schema=schema,
    )  # fmt: skip


def split_smiles(data: Dataset, split: str = "train") -> list[str]:
    """Canonical SMILES of the molecules of a split, read back from their tokens."""
    smiles = Vocabulary(data.meta["tokens"]).decode(getattr(data, split).x.cpu())
    return [canonical_smiles(s) or "" for s in smiles]


def is_molecule_data(data: Dataset) -> bool:
    """Whether a data set holds molecules as token rows (its ``meta`` carries a vocabulary)."""
    return "tokens" in data.meta


def _load_moses_dataset(data_dir: Path | None, train_size: int | None, condition=None) -> Dataset:
    return load_moses(train_size, data_dir=data_dir, properties=condition)


#: molecule data set name -> loader(data_dir, train_size, condition);
#: :func:`~pyro_cvae.data.load_dataset`
#: dispatches to it (the subset depends on the size, so it is drawn by the loader itself)
MOLECULE_DATASETS = {"moses": _load_moses_dataset}


def draw_molecules(
    smiles: Sequence[str],
    path: str | Path,
    *,
    legends: Sequence[str] | None = None,
    per_row: int = 5,
    size: int = 250,
) -> Path:
    """A PNG grid of molecules drawn by RDKit; unparsable SMILES are left out."""
    Chem = _require("rdkit.Chem")
    Draw = _require("rdkit.Chem.Draw")
    mols, names = [], []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is not None and mol.GetNumAtoms():
            mols.append(mol)
            names.append(legends[i] if legends is not None else "")
    if not mols:
        raise ValueError("none of the molecules could be parsed by RDKit; nothing to draw")
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size), legends=names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(str(path))
    return path


def read_molecules(
    path: str | Path,
    tokens: Sequence[str],
    length: int,
    schema: AttributeSchema | None,
    *,
    column: str = "SMILES",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A user's CSV of SMILES as a model reads it: ids (N, length), conditions (N, P) from the
    molecules' own RDKit properties (``None`` without a ``schema``), and the SMILES.

    Raises:
        ValueError: naming the file's line of the first SMILES that RDKit cannot parse, that has
            a token the model's vocabulary lacks, or that is too long for the model.
    """
    smiles = read_smiles_csv(path, column)
    if not smiles:
        raise ValueError(f"{path} lists no molecules under its {column!r} column")
    vocab = Vocabulary(tokens)
    props = molecule_properties(smiles, progress=progress)
    token_lists = []
    for i, s in enumerate(smiles):
        line = i + 2  # the header is line 1
        if not np.isfinite(props[i, :4]).all():
            raise ValueError(
                f"{path}, line {line}: RDKit cannot parse the SMILES {s!r}; fix or remove that line"
            )
        try:
            ts = smiles_to_tokens(s)
        except ValueError as e:
            raise ValueError(f"{path}, line {line}: {e}; fix or remove that line") from None
        if vocab.unknown(ts) or len(ts) > length - 1:
            why = (f"its SELFIES tokens {vocab.unknown(ts)} are not in the model's vocabulary"
                   if vocab.unknown(ts) else
                   f"it has {len(ts)} SELFIES tokens, the model reads at most {length - 1}")  # fmt: skip
            raise ValueError(f"{path}, line {line}: the molecule {s!r} cannot be scored: {why}")
        token_lists.append(ts)
    y = None if schema is None else encode_properties(property_columns(props, schema.names), schema)
    return vocab.encode(token_lists, length), y, smiles
