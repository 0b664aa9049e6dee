"""The model kinds registry (pyro_cvae.models.kinds): what the layers above ask of a model."""

import pytest
from pyro.nn import PyroModule

import pyro_cvae as pc
from pyro_cvae.models import (
    KINDS,
    BaselineNet,
    LabelClassifier,
    ModelKind,
    MoleculeConfig,
    QuadrantCVAE,
    build_model,
    kind_of,
    register_kind,
)
from pyro_cvae.models.kinds import PYRO_MODEL
from pyro_cvae.train.families import (
    FAMILIES,
    ClassifierFamily,
    CompletionFamily,
    ConditionalFamily,
    SemiSupervisedFamily,
    family_for,
)


class Mine(PyroModule):
    def model(self, x, y=None):
        pass

    def guide(self, x, y=None):
        pass


@pytest.mark.parametrize("cls", sorted(KINDS, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_kind_names_a_family_of_the_trainer(cls):
    assert KINDS[cls].family in FAMILIES


def test_families_follow_the_kind():
    assert type(family_for(pc.CVAE())) is ConditionalFamily
    assert type(family_for(pc.HierarchicalCVAE(latent_dims=(4, 2)))) is ConditionalFamily
    assert type(family_for(pc.M2())) is SemiSupervisedFamily
    assert type(family_for(QuadrantCVAE())) is CompletionFamily
    assert type(family_for(BaselineNet())) is CompletionFamily
    assert type(family_for(LabelClassifier())) is ClassifierFamily
    assert type(family_for(Mine())) is ConditionalFamily  # a model of the user's own class


def test_output_and_figures_follow_the_config():
    images, rows = pc.CVAE(), pc.CVAE(image_shape=(5,), likelihood="gaussian", num_classes=0)
    assert kind_of(images).output(images) == "images"
    assert "samples" in kind_of(images).figures(images)
    assert kind_of(rows).output(rows) == "rows"
    assert kind_of(rows).figures(rows) == ("latent", "curves")
    assert "analogies" in kind_of(pc.M2()).figures(pc.M2())
    assert kind_of(Mine()) is PYRO_MODEL and PYRO_MODEL.output(Mine()) is None


def test_a_new_kind_is_one_entry():
    kind = ModelKind("mine", "classifier", lambda m: "labels", lambda m: ())
    register_kind(Mine, kind)
    try:
        assert kind_of(Mine()) is kind and type(family_for(Mine())) is ClassifierFamily
        with pytest.raises(ValueError, match="already has a kind"):
            register_kind(Mine, ModelKind("other", "conditional", lambda m: None, lambda m: ()))
    finally:
        del KINDS[Mine]
    with pytest.raises(ValueError, match="family must be one of"):
        ModelKind("bad", "adversarial", lambda m: None, lambda m: ())


def test_build_model_reads_the_builders():
    assert type(build_model(pc.ModelConfig())) is pc.CVAE
    assert type(build_model(pc.ModelConfig(latent_dims=(4, 2)))) is pc.HierarchicalCVAE
    mol = MoleculeConfig(tokens=MoleculeConfig().tokens + ("[C]",), max_len=5, hidden_dim=8,
                         embed_dim=4, latent_dim=3)  # fmt: skip
    assert kind_of(build_model(mol)).name == "molecules"
    with pytest.raises(TypeError, match="ModelConfig or MoleculeConfig"):
        build_model(object())
