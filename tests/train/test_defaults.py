"""pyro_cvae.train.defaults: the training config and the model of a family, from what is given."""

import dataclasses

import pytest

import pyro_cvae as pc
from pyro_cvae.data.molecules import SPECIAL_TOKENS
from pyro_cvae.models import M2, MoleculeConfig
from pyro_cvae.train import FAMILY_MODELS, build_for, train_config
from pyro_cvae.train.families import FAMILIES


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_fields_given_as_none_take_the_family_configs_defaults(family):
    cls = FAMILIES[family].config_class
    unset = {f.name: None for f in dataclasses.fields(cls)}
    assert train_config(family, **unset) == cls()
    assert type(train_config(family)) is cls


def test_semi_supervised_defaults_are_m2s_own():
    cfg = train_config("semi-supervised", lr=None, batch_size=None, num_labels=50)
    assert (cfg.lr, cfg.batch_size, cfg.num_labels) == (3e-4, 100, 50)
    assert train_config("conditional", lr=None).lr == pc.TrainConfig.lr == 1e-3


def test_given_fields_win():
    cfg = train_config("semi-supervised", lr=0.01, batch_size=7, seed=3, label_seed=3)
    assert (cfg.lr, cfg.batch_size, cfg.seed, cfg.label_seed) == (0.01, 7, 3, 3)


def test_a_label_fraction_replaces_the_default_label_count():
    cfg = train_config("semi-supervised", num_labels=None, label_fraction=0.2)
    assert cfg.num_labels is None and cfg.label_fraction == 0.2
    with pytest.raises(ValueError, match="not both"):  # both given: still refused
        train_config("semi-supervised", num_labels=50, label_fraction=0.2)


def test_an_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown training family 'm3'.*conditional"):
        train_config("m3")
    with pytest.raises(ValueError, match="unknown training family"):
        build_for(pc.ModelConfig(), "m3")


def test_build_for_builds_the_families_models():
    assert type(build_for(pc.ModelConfig())) is pc.CVAE
    assert type(build_for(pc.ModelConfig(latent_dims=(4, 2)))) is pc.HierarchicalCVAE
    assert type(build_for(pc.ModelConfig(), "semi-supervised")) is M2


def test_semi_supervised_molecules_are_refused():
    cfg = MoleculeConfig(tokens=(*SPECIAL_TOKENS, "C"), max_len=5)
    with pytest.raises(ValueError, match="from a ModelConfig.*got a MoleculeConfig"):
        build_for(cfg, "semi-supervised")
