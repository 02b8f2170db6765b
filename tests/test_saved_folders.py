"""Model folders saved by astronn_gaiacal 0.1.0 before the package re-layout still load and predict.

``tests/data/saved_0.1.0`` was written by ``make_saved.py`` (in that folder) with the code of
commit cdee452; ``expected.json`` holds the sums of each weight array at save time.
"""
import json

import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401  (first: selects Keras 2 and registers the classes load_folder needs)
from astronn_gaiacal.models import DeepEnsemble, DenseGaiaBNN, load
from astroNN.models import load_folder  # noqa: E402


@pytest.fixture
def saved(data_path):
    folder = data_path("saved_0.1.0")
    with open(f"{folder}/expected.json") as f:
        expected = json.load(f)
    return folder, expected, np.load(f"{folder}/inputs.npz")


def _sums(model):
    return [float(np.sum(a, dtype=np.float64)) for a in model.keras_model.get_weights()]


@pytest.mark.parametrize("name", ["dense_constant", "dense_multivariate"])
def test_single_model_folder_loads_with_its_weights(saved, name):
    folder, expected, inputs = saved
    model = load_folder(f"{folder}/{name}")
    assert isinstance(model, DenseGaiaBNN)
    assert model.offset == name.split("_")[1]
    np.testing.assert_allclose(_sums(model), expected[name]["weight_sums"], rtol=1e-6, atol=1e-6)
    fakemag, err = model.predict(inputs["x"])
    assert fakemag.shape == (20, 1) and np.all(fakemag > 0) and np.all(err["total"] > 0)


def test_multivariate_folder_predicts_zeropoints(saved):
    folder, _, inputs = saved
    model = load(f"{folder}/dense_multivariate")
    zp, zp_err = model.predict_zeropoint({"phot_g_mean_mag": inputs["g"], "bp_rp": inputs["bp_rp"],
                                         "teff": inputs["teff"]}, mc_num=20)
    assert zp.shape == (20,) and np.all(np.isfinite(zp.value)) and np.all(zp_err.value > 0)


def test_ensemble_folder_loads_with_its_members(saved):
    folder, expected, _ = saved
    ens = load(f"{folder}/dense_ensemble")
    assert isinstance(ens, DeepEnsemble) and len(ens) == 2
    for member, sums in zip(ens.members, expected["dense_ensemble"]["member_weight_sums"]):
        np.testing.assert_allclose(_sums(member), sums, rtol=1e-6, atol=1e-6)
    value, error = ens.zeropoint(mc_num=20)
    assert np.isfinite(value.value) and error.value > 0


def test_loading_checks_the_astronn_magic_number(saved, monkeypatch):
    import astroNN.config

    folder, _, _ = saved
    monkeypatch.setattr(astroNN.config, "MAGIC_NUMBER", -1.0)
    with pytest.raises(ValueError, match="MagicNumber"):
        load_folder(f"{folder}/dense_constant")
