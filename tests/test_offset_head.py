"""The quadratic offset head (offset_head='quadratic'): the layer, its training against a closed form, the model folder."""
import json
import os

import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401  (first: Keras 2 and the registrations)
from astronn_gaiacal._compat import keras
from astronn_gaiacal.constants import DEFAULT_OFFSET_HEAD, OFFSET_HEADS
from astronn_gaiacal.models.folders import PARAMETER_FILE, PLUGIN_KEY
from astronn_gaiacal.nn.layers import FakemagToParallax, QuadraticOffset
from astroNN.models import load_folder

from _toy import N_PIX, ToyApogeeBCNN, toy_survey


def test_layer_is_the_quadratic_of_each_feature(rng):
    z = rng.normal(size=(50, 3)).astype("float32")
    head = QuadraticOffset()
    head(z[:1])
    c, b, a = np.array([0.3]), np.array([1.0, -2.0, 0.5]), np.array([0.2, 0.0, -0.7])
    head.set_weights([c, b, a])
    expected = c + z @ b + (z**2) @ a
    np.testing.assert_allclose(head(z).numpy()[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_layer_serialises_and_is_registered():
    head = QuadraticOffset(curvature=False, curvature_l2=0.01, name="offset_output")
    clone = QuadraticOffset.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    assert clone.curvature is False and clone.curvature_l2 == 0.01
    inp = keras.Input((2,))
    model = keras.Model(inp, QuadraticOffset(name="q")(inp))
    model.get_layer("q").set_weights([np.array([1.0]), np.array([2.0, 3.0]), np.array([0.5, 0.0])])
    rebuilt = keras.Model.from_config(model.get_config())  # finds the layer by its registered name
    rebuilt.set_weights(model.get_weights())
    x = np.array([[1.0, -1.0], [2.0, 0.5]], "float32")
    np.testing.assert_allclose(rebuilt(x).numpy(), model(x).numpy())
    with pytest.raises(ValueError, match="curvature_l2"):
        QuadraticOffset(curvature_l2=-1.0)


def test_trained_head_gives_the_weighted_least_squares_coefficients():
    """Parallax = exact fakemag 10^(-m/5) + head(z): training by weighted least squares must land on the
    closed-form WLS solution of (parallax - model parallax) on [1, z, z^2], within a small fraction of its
    errors, and both must contain the injected coefficients."""
    rng = np.random.default_rng(7)
    n = 4000
    mag = rng.uniform(8.0, 12.5, n)
    fakemag = 10 ** rng.uniform(1.0, 2.0, n)
    g = mag + rng.uniform(1.8, 3.2, n)
    teff = rng.uniform(4000.0, 5200.0, n)
    feats = np.stack([g, teff], axis=1)
    z = (feats - feats.mean(axis=0)) / feats.std(axis=0)
    truth = np.array([-0.05, 0.02, -0.01, 0.004, 0.003])  # c, b_G, b_T, a_G, a_T (mas)
    design = np.column_stack([np.ones(n), z, z**2])
    zeropoint = design @ truth
    err = rng.uniform(0.02, 0.06, n)
    plx = fakemag * 10 ** (-mag / 5) + zeropoint + rng.normal(0.0, err)

    # the closed form
    w = 1.0 / err**2
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    wls = cov @ (design.T @ (w * (plx - fakemag * 10 ** (-mag / 5))))
    wls_err = np.sqrt(np.diag(cov))
    assert np.all(np.abs(wls - truth) < 4 * wls_err)

    # the same through the model's layers
    keras.utils.set_random_seed(1)
    f_in, m_in, z_in = keras.Input((1,)), keras.Input((1,)), keras.Input((2,))
    head = QuadraticOffset(name="offset_output")
    out = FakemagToParallax(with_offset=True)([f_in, m_in, head(z_in)])
    model = keras.Model([f_in, m_in, z_in], out)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=200, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    inputs = [fakemag[:, None].astype("float32"), mag[:, None].astype("float32"), z.astype("float32")]
    model.fit(inputs, plx[:, None].astype("float32"), sample_weight=(w / w.mean()).astype("float32"),
              batch_size=n, epochs=1500, verbose=0, shuffle=False)
    c, b, a = head.get_weights()
    learned = np.concatenate([c, b, a])
    np.testing.assert_array_less(np.abs(learned - wls), 0.1 * wls_err)


@pytest.fixture(scope="module")
def quadratic_folder(tmp_path_factory):
    astronn_gaiacal._compat.keras.utils.set_random_seed(5)
    data = toy_survey(300, seed=21, n_pixels=N_PIX, zeropoint=-0.05)
    net = ToyApogeeBCNN(offset="multivariate", offset_head="quadratic", lr=3e-3)
    net.max_epochs, net.verbose = 2, 0
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], data["mag"], offset_features=data["features"])
    return net, net.save(str(tmp_path_factory.mktemp("head") / "quadratic")), data


def test_model_folder_keeps_the_head(quadratic_folder):
    net, folder, data = quadratic_folder
    assert isinstance(net.offset_model.get_layer("offset_output"), QuadraticOffset)
    with open(os.path.join(folder, PARAMETER_FILE)) as f:
        assert json.load(f)[PLUGIN_KEY]["offset_head"] == "quadratic"
    loaded = load_folder(folder)
    assert loaded.offset_head == "quadratic"
    np.testing.assert_allclose(loaded.offset_model.get_weights()[1], net.offset_model.get_weights()[1])
    zp, zp_err = loaded.predict_zeropoint(data["features"], mc_num=3)
    ref, _ = net.predict_zeropoint(data["features"], mc_num=3)
    np.testing.assert_allclose(zp.value, ref.value, rtol=1e-5, atol=1e-9)
    assert np.all(zp_err.value == 0)  # no dropout in the head: no MC spread


def test_folder_without_the_key_loads_as_network(tmp_path):
    data = toy_survey(200, seed=22, n_pixels=N_PIX, zeropoint=-0.05)
    net = ToyApogeeBCNN(offset="multivariate")
    net.max_epochs, net.verbose = 1, 0
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], data["mag"], offset_features=data["features"])
    folder = net.save(str(tmp_path / "old"))
    path = os.path.join(folder, PARAMETER_FILE)
    with open(path) as f:
        params = json.load(f)
    del params[PLUGIN_KEY]["offset_head"]
    with open(path, "w") as f:
        json.dump(params, f)
    assert load_folder(folder).offset_head == "network"


def test_offset_head_is_validated():
    assert DEFAULT_OFFSET_HEAD in OFFSET_HEADS
    assert ToyApogeeBCNN(offset="multivariate").offset_head == DEFAULT_OFFSET_HEAD
    with pytest.raises(ValueError, match="offset_head"):
        ToyApogeeBCNN(offset="multivariate", offset_head="spline")
