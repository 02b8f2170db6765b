"""A multivariate offset fitted with the luminosity network of another model (fit(luminosity_from=)).

The use case: a luminosity network trained against one Gaia catalogue, and the zero-point of a new catalogue
(a new release, with a G trend) of the same stars calibrated with that network held fixed.
"""
import numpy as np
import pytest
from astropy.table import Table

import astronn_gaiacal
from astronn_gaiacal.models import ApogeeGaiaBCNN
from astronn_gaiacal.models.ensemble import DeepEnsemble
from astroNN.models import load_folder

from _toy import N_PIX, ToyApogeeBCNN, toy_survey


def _trend(features):
    return -0.1 + 0.04 * (features["phot_g_mean_mag"] - 13.5)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Stage 1: a constant-offset model on one catalogue; stage 2: the multivariate offset of a new catalogue."""
    astronn_gaiacal._compat.keras.utils.set_random_seed(3)
    old = toy_survey(400, seed=12, n_pixels=N_PIX, zeropoint=-0.05)
    data = toy_survey(400, seed=12, n_pixels=N_PIX, zeropoint=_trend)  # the same stars, a new zero-point
    np.testing.assert_array_equal(old["spectra"], data["spectra"])
    first = ToyApogeeBCNN(offset="constant", lr=2e-3)
    first.max_epochs, first.verbose = 120, 0
    first.fit(old["spectra"], old["parallax"], old["parallax_error"], old["mag"])
    folder = first.save(str(tmp_path_factory.mktemp("two_stage") / "constant"))
    second = ToyApogeeBCNN(offset="multivariate", lr=3e-3)
    second.max_epochs, second.verbose = 60, 0
    second.fit(data["spectra"], data["parallax"], data["parallax_error"], data["mag"],
               offset_features=data["features"], luminosity_from=folder)
    saved = second.save(str(tmp_path_factory.mktemp("two_stage") / "multivariate"))
    return first, second, load_folder(saved), data, folder


def test_frozen_luminosity_is_the_first_stage_network(stages):
    first, second, _, data, _ = stages
    for a, b in zip(first.luminosity_model.get_weights(), second.luminosity_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    n_pix = second.n_pixels
    np.testing.assert_array_equal(second.input_mean["input"][:n_pix], first.input_mean["input"][:n_pix])
    assert second._label_std() == first._label_std()
    # so both give the same luminosities (same MC masks from the same seed)
    first.mc_num = second.mc_num = 20
    astronn_gaiacal._compat.keras.utils.set_random_seed(5)
    f1, _ = first.predict(data["spectra"][:40])
    astronn_gaiacal._compat.keras.utils.set_random_seed(5)
    f2, _ = second.predict(data["spectra"][:40])
    np.testing.assert_allclose(f1, f2, rtol=1e-6)


def test_second_stage_offset_follows_the_injected_trend(stages):
    _, _, loaded, data, _ = stages
    zp, _ = loaded.predict_zeropoint(Table(data["features"]), mc_num=50)
    slope = np.polyfit(data["features"]["phot_g_mean_mag"], zp.value, 1)[0]
    assert 0.03 < slope < 0.05  # injected 0.04 mas/mag
    assert np.corrcoef(data["zeropoint"], zp.value)[0, 1] > 0.9


def test_provenance_is_saved(stages):
    _, second, loaded, _, folder = stages
    assert loaded.luminosity_frozen and second.luminosity_frozen
    assert loaded.luminosity_from == second.luminosity_from and loaded.luminosity_from.endswith("constant")


def test_fine_tuning_changes_the_luminosity_network(stages):
    first, _, _, data, folder = stages
    net = ToyApogeeBCNN(offset="multivariate", lr=3e-3)
    net.max_epochs, net.verbose = 2, 0
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], data["mag"], offset_features=data["features"],
            luminosity_from=first, freeze_luminosity=False)
    changed = [not np.array_equal(a, b) for a, b in zip(first.luminosity_model.get_weights(),
                                                       net.luminosity_model.get_weights())]
    assert any(changed) and not net.luminosity_frozen


def test_bad_luminosity_sources(stages, tmp_path):
    first, second, _, data, folder = stages
    args = (data["spectra"], data["parallax"], data["parallax_error"], data["mag"])
    kw = dict(offset_features=data["features"])
    with pytest.raises(ValueError, match="untrained model"):
        second.fit(*args, luminosity_from=folder, **kw)
    with pytest.raises(TypeError, match="not an ensemble"):
        ToyApogeeBCNN(offset="multivariate").fit(*args, luminosity_from=DeepEnsemble([first, first]), **kw)
    with pytest.raises(FileNotFoundError):
        ToyApogeeBCNN(offset="multivariate").fit(*args, luminosity_from=str(tmp_path / "nowhere"), **kw)
    with pytest.raises(ValueError, match="256"):  # the full-size APOGEE model cannot take a toy network
        ApogeeGaiaBCNN(offset="multivariate").fit(
            np.ones((100, 7514), np.float32), np.full(100, 0.5), np.full(100, 0.05), np.full(100, 10.0),
            offset_features={k: np.ones(100) for k in data["features"]}, luminosity_from=first)
