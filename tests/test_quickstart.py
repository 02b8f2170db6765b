"""The README's Python quickstart, the astroNN way: ``load_folder``, ``model.test(x)``, the zero-point.

On the model folders saved by 0.1.0 (tests/data/saved_0.1.0), so the calls a user copies
from the README are the calls tested here.
"""
import numpy as np
import pytest

import astronn_gaiacal  # cheap; registers the plugin with astroNN when astroNN.models is imported
from astroNN.models import load_folder  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from pathlib import Path

    return np.load(Path(__file__).parent / "data" / "saved_0.1.0" / "inputs.npz")


def test_load_folder_then_test_as_astronn_users_do(data_path, inputs):
    net = load_folder(data_path("saved_0.1.0", "dense_constant"))
    net.mc_num = 200
    x, mag = inputs["x"], inputs["mag"]
    fakemag, err = net.test(x)  # astroNN's call: MC-dropout mean and {'total', 'model', 'predictive'}
    assert fakemag.shape == (len(x), 1) and set(err) == {"total", "model", "predictive"}
    assert np.all(fakemag > 0)
    # total^2 = model^2 + predictive^2 (astroNN's decomposition), up to the float32 rounding of the outputs
    np.testing.assert_allclose(err["total"] ** 2, err["model"] ** 2 + err["predictive"] ** 2, rtol=1e-4)
    # the paper's eq. 1, computed here: parallax = L 10^(-m/5); the package's own conversion of an independent
    # MC run agrees within the Monte Carlo error of two means of mc_num passes
    parallax, parallax_err = net.predict_parallax(x, magnitude=mag)
    mine = fakemag[:, 0] * 10 ** (-mag / 5)
    mc_error = np.sqrt(2) * err["model"][:, 0] * 10 ** (-mag / 5) / np.sqrt(net.mc_num)
    assert np.all(np.abs(parallax.to_value("mas") - mine) < 6 * mc_error + 1e-6)
    np.testing.assert_allclose(parallax_err["total"].to_value("mas"), err["total"][:, 0] * 10 ** (-mag / 5),
                               rtol=0.1)


def test_ensemble_folder_opens_with_one_call_next_to_load_folder(data_path):
    ensemble = astronn_gaiacal.load(data_path("saved_0.1.0", "dense_ensemble"))  # any folder: single or ensemble
    single = astronn_gaiacal.load(data_path("saved_0.1.0", "dense_constant"))
    assert type(ensemble).__name__ == "DeepEnsemble" and len(ensemble) == 2
    assert type(single).__name__ == "DenseGaiaBNN"
    value, error = ensemble.zeropoint(mc_num=50)
    assert value.unit == "uas" and np.isfinite(value.value) and 0 < error.value < 1e3
