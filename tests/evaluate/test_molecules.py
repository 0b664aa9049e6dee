"""MOSES's metrics (issue 26): FCD, SNN, Frag, Scaf, IntDiv/IntDiv2 and novelty on tiny sets
whose answers are worked out by hand (Tanimoto from the fingerprints' bit sets, cosines of
counts written down)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rdkit")

from pyro_cvae.evaluate.molecules import (  # noqa: E402
    _fingerprint_matrix,
    fcd,
    fragment_similarity,
    fragments,
    frechet_distance,
    moses_internal_diversity,
    moses_metrics,
    reference_statistics,
    scaffold_similarity,
    scaffolds,
    snn,
)

#: 20 drug-like MOSES molecules (the first of its test file)
TWENTY = [
    "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1", "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O",
    "CCOC(=O)c1ncn2c1CN(C)C(=O)c1cc(F)ccc1-2", "Clc1ccccc1-c1nc(-c2ccncc2)no1",
    "CC(C)(Oc1ccc(Cl)cc1)C(=O)OCc1cccc(CO)n1", "Cc1ccc(C(=O)Nc2ccc(F)cc2)cc1",
    "O=C(NCc1ccccc1)c1ccc2c(c1)OCO2", "CCN(CC)C(=O)c1ccc(OC)c(OC)c1", "Cc1nc(C)c(C(=O)NC2CC2)s1",
    "COc1ccc(S(=O)(=O)N2CCCC2)cc1", "CC(=O)Nc1ccc(-c2nc3ccccc3s2)cc1", "O=C(O)c1ccc(N2CCOCC2)cc1",
    "CCc1ccc(NC(=O)c2cccnc2)cc1", "Cc1cc(C)n(-c2ccc(C(=O)O)cc2)n1", "COC(=O)c1ccc(NS(C)(=O)=O)cc1",
    "O=C(Nc1ccccc1)c1ccco1", "CC(C)NC(=O)c1ccc(Br)cc1", "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "N#Cc1ccc(OCc2ccccc2)cc1", "CC1(C)CC(=O)C=C(N2CCCCC2)C1",
]  # fmt: skip


def _bits(smiles: str) -> set[int]:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return set(gen.GetFingerprint(Chem.MolFromSmiles(smiles)).GetOnBits())


def _tanimoto(a: str, b: str) -> float:
    x, y = _bits(a), _bits(b)
    return len(x & y) / len(x | y)


def _fps(smiles):
    return _fingerprint_matrix(smiles)  # the reference's "SNN" statistics, without ChemNet


class TestSimilarities:
    def test_snn_is_the_mean_nearest_neighbour_tanimoto(self):
        gen, ref = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccccc1"], ["CCN", "Oc1ccccc1C", "CCCO"]
        expected = np.mean([max(_tanimoto(g, r) for r in ref) for g in gen])
        assert snn(gen, _fps(ref)) == pytest.approx(expected, abs=1e-12)
        assert snn(["CCO"], _fps(["CCN", "CCO"])) == 1.0  # a molecule of the reference

    def test_internal_diversity_counts_every_ordered_pair_with_itself(self):
        a, b = "CC(=O)Nc1ccccc1", "CC(=O)Nc1ccc(O)cc1"
        t = _tanimoto(a, b)
        # rows (1 + t)/2 each: IntDiv = 1 - (1 + t)/2; IntDiv2 = 1 - sqrt((1 + t^2)/2)
        assert moses_internal_diversity([a, b], 1) == pytest.approx((1 - t) / 2, abs=1e-12)
        assert moses_internal_diversity([a, b], 2) == pytest.approx(
            1 - math.sqrt((1 + t * t) / 2), abs=1e-12)  # fmt: skip
        assert moses_internal_diversity([a, a, a], 1) == pytest.approx(0.0, abs=1e-12)

    def test_fragment_similarity_is_the_cosine_of_fragment_counts(self):
        # rings with no BRICS bond are one fragment each: gen {benzene 2, cyclohexane 1},
        # reference {benzene 1, cyclohexane 2}: cosine (2 + 2) / (sqrt 5 sqrt 5) = 0.8
        gen, ref = ["c1ccccc1", "c1ccccc1", "C1CCCCC1"], ["c1ccccc1", "C1CCCCC1", "C1CCCCC1"]
        assert fragments(gen) == {"c1ccccc1": 2, "C1CCCCC1": 1}
        assert fragment_similarity(gen, fragments(ref)) == pytest.approx(0.8, abs=1e-12)
        # an amide on a ring breaks at both BRICS bonds of its nitrogen (types 1-5, 5-15)
        assert fragments(["CC(=O)NC1CCCCC1"]) == {"[1*]C(C)=O": 1, "[5*]N[5*]": 1,
                                                  "[15*]C1CCCCC1": 1}  # fmt: skip

    def test_scaffold_similarity_counts_scaffolds_of_two_rings_or_more(self):
        # methylnaphthalene's scaffold is naphthalene; benzene (one ring) has none that counts:
        # gen {naphthalene 2}, reference {naphthalene 1, biphenyl 1}: cosine 2 / (2 sqrt 2)
        gen = ["c1ccc2ccccc2c1", "Cc1ccc2ccccc2c1", "c1ccccc1"]
        ref = ["c1ccc2ccccc2c1", "c1ccc(-c2ccccc2)cc1"]
        assert scaffolds(gen) == {"c1ccc2ccccc2c1": 2}
        assert scaffold_similarity(gen, scaffolds(ref)) == pytest.approx(1 / math.sqrt(2))
        assert math.isnan(scaffold_similarity(["c1ccccc1"], scaffolds(ref)))

    def test_invalid_smiles_are_refused_by_name(self):
        with pytest.raises(ValueError, match="do not parse.*'C1CC'"):
            snn(["C1CC"], _fps(["CCO"]))


class TestFCD:
    def test_frechet_distance_of_one_dimensional_gaussians(self):
        # (mu1 - mu2)^2 + (sqrt s1 - sqrt s2)^2
        assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
        with pytest.raises(ValueError, match="differ in size"):
            frechet_distance([0.0, 0.0], np.eye(2), [0.0], [[1.0]])

    def test_a_set_against_itself_is_zero_and_against_another_is_not(self):
        pytest.importorskip("fcd_torch")
        ref = reference_statistics(TWENTY)
        assert abs(fcd(TWENTY, ref["FCD"])) < 1e-3
        other = ["CCO", "CCCCCCCC", "OCCO", "CC(C)O", "CCOCC", "CCCCO", "CCN", "CCCN", "NCCO",
                 "CC=O", "CCC(=O)O", "CCCCCCO", "CCCC(C)C", "OCC(O)CO", "CCCCN", "CC(=O)C"]  # fmt: skip
        # half the set is nearer than small aliphatic molecules (both far from 0 at this size)
        assert fcd(other, ref["FCD"]) > 2 * fcd(TWENTY[:10], ref["FCD"]) > 1


class TestMosesMetrics:
    def test_keys_validity_uniqueness_and_novelty(self):
        pytest.importorskip("fcd_torch")
        ref = reference_statistics(TWENTY)
        gen = TWENTY[:5] + TWENTY[:5] + ["CCO", "not a molecule", None, "C1CC"]  # fmt: skip
        out = moses_metrics(gen, reference=ref, train_smiles=TWENTY[:3], ks=(10, 100))
        assert set(out) == {"valid", "unique@10", "FCD/Test", "SNN/Test", "Frag/Test",
                            "Scaf/Test", "IntDiv", "IntDiv2", "Novelty"}  # fmt: skip
        assert out["valid"] == 11 / 14
        assert out["unique@10"] == 5 / 10  # the first ten valid ones: five molecules twice
        # distinct valid: five of TWENTY (three in train) and ethanol: 3 of 6 novel
        assert out["Novelty"] == pytest.approx(3 / 6)
        assert out["SNN/Test"] == pytest.approx(
            (10 + max(_tanimoto("CCO", r) for r in TWENTY)) / 11)  # fmt: skip

    def test_nothing_valid_gives_nan_not_an_error(self):
        ref = {"FCD": {}, "SNN": {"fps": _fps(["CCO"])}, "Frag": {"frag": fragments(["CCO"])},
               "Scaf": {"scaf": scaffolds(["c1ccc2ccccc2c1"])}}  # fmt: skip
        out = moses_metrics(["C1CC", None], reference=ref, train_smiles=[])
        assert out["valid"] == 0
        assert all(math.isnan(out[k]) for k in ("FCD/Test", "SNN/Test", "Frag/Test",
                                                "Scaf/Test", "IntDiv", "Novelty"))  # fmt: skip
