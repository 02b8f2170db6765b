"""FakemagToParallax: values, exact variance, astroNN mode, serialisation."""
import numpy as np
import pytest

from astronn_gaiacal._compat import keras, tf
from astronn_gaiacal.nn import FakemagLogVariance, FakemagToParallax


def _col(*v):
    return tf.constant(np.array(v, dtype=np.float32).reshape(-1, 1))


def test_parallax_hand_computed():
    # L = 2.5 * 40 = 100, m = 10 -> plx = 100 * 10**-2 = 1 mas; m = 5 -> 10 mas
    layer = FakemagToParallax(fakemag_scale=2.5)
    out = layer([_col(40.0, 40.0), _col(10.0, 5.0)]).numpy().ravel()
    np.testing.assert_allclose(out, [1.0, 10.0], rtol=1e-6)


def test_normalised_magnitude_and_offset():
    # m = 0.5 * 2 + 9 = 10; L = 100 -> 1 mas; offset -0.05 -> 0.95 mas
    layer = FakemagToParallax(mag_mean=9.0, mag_std=2.0, with_offset=True)
    out = layer([_col(100.0), _col(0.5), _col(-0.05)]).numpy().ravel()
    np.testing.assert_allclose(out, [0.95], rtol=1e-6)


def test_exact_variance_propagation():
    # sigma_L^2 = k^2 e^s; sigma_plx^2 = sigma_L^2 10^(-2m/5)
    k, f, m, s = 3.0, 20.0, 11.0, np.log(0.04)
    layer = FakemagToParallax(fakemag_scale=k, with_variance=True, with_offset=True)
    plx, logvar = layer([_col(f), _col(m), _col(0.1), _col(s)])
    expected_var = (k**2 * np.exp(s)) * 10 ** (-2 * m / 5)
    np.testing.assert_allclose(np.exp(logvar.numpy().ravel()), [expected_var], rtol=1e-5)
    np.testing.assert_allclose(plx.numpy().ravel(), [k * f * 10 ** (-m / 5) + 0.1], rtol=1e-6)


def test_astronn_variance_propagation_formula():
    # astroNN 1.1.0: log|plx_L * e^s / f|, plx_L without offset
    k, f, m, s = 73.85, 1.7, 9.0, -2.0
    layer = FakemagToParallax(fakemag_scale=k, with_variance=True, with_offset=True, variance_propagation="astronn")
    _, logvar = layer([_col(f), _col(m), _col(0.3), _col(s)])
    plx_l = k * f * 10 ** (-m / 5)
    np.testing.assert_allclose(logvar.numpy().ravel(), [np.log(abs(plx_l * np.exp(s) / f))], rtol=1e-5)


def test_fakemag_logvariance_modes():
    s = _col(-1.0)
    np.testing.assert_allclose(FakemagLogVariance(5.0)(s).numpy().ravel(), [-1.0 + 2 * np.log(5.0)], rtol=1e-6)
    np.testing.assert_allclose(
        FakemagLogVariance(5.0, variance_propagation="astronn")(s).numpy().ravel(), [-1.0 + np.log(5.0)], rtol=1e-6
    )


def test_config_roundtrip():
    layer = FakemagToParallax(
        fakemag_scale=73.85, mag_mean=9.06, mag_std=1.2, with_offset=True, with_variance=True,
        variance_propagation="astronn", name="plx",
    )
    clone = FakemagToParallax.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = [_col(1.5), _col(0.3), _col(0.01), _col(-0.5)]
    for a, b in zip(layer(inputs), clone(inputs)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="variance_propagation"):
        FakemagToParallax(variance_propagation="linear")
    with pytest.raises(ValueError, match="fakemag_scale"):
        FakemagToParallax(fakemag_scale=-1)
    with pytest.raises(ValueError, match="takes 3 inputs"):
        FakemagToParallax(with_offset=True)([_col(1.0), _col(1.0)])


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_full_model_save_load(tmp_path, fmt):
    f_in = keras.Input((1,), name="fakemag")
    m_in = keras.Input((1,), name="mag")
    o_in = keras.Input((1,), name="offset")
    s_in = keras.Input((1,), name="logvar")
    outs = FakemagToParallax(fakemag_scale=2.0, mag_mean=9.0, with_offset=True, with_variance=True)(
        [f_in, m_in, o_in, s_in]
    )
    model = keras.Model([f_in, m_in, o_in, s_in], outs)
    path = str(tmp_path / f"model.{fmt}")
    model.save(path)
    loaded = keras.models.load_model(path)  # found through the registration, no custom_objects
    x = [np.array([[50.0], [70.0]]), np.array([[1.0], [-0.5]]), np.array([[0.02], [-0.05]]), np.array([[-1.0], [0.5]])]
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
