"""mc_predict_shared_masks: exact moments by enumerating every dropout mask, and its edge cases."""
import itertools

import numpy as np
import pytest
from astronn_gaiacal._compat import keras, tf  # noqa: I001  (before astroNN)
from astroNN.nn.layers import MCDropout
from astronn_gaiacal.nn.inference import dense_chain, mc_predict, mc_predict_shared_masks
from astronn_gaiacal.nn.fast import effective_rate
from astronn_gaiacal.nn.layers import FastMCDropout

RATE = 0.3


def _tiny(seed=0, disable=False):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((2,))
    x = keras.layers.Dense(3, activation="tanh")(inp)
    x = FastMCDropout(RATE, disable=disable)(x)
    x = keras.layers.Dense(2, activation="tanh")(x)
    x = MCDropout(RATE, disable=disable)(x)
    return keras.Model(inp, keras.layers.Dense(1)(x))


def _exact_moments(model, x):
    """Mean and variance over all 2^3 x 2^2 masks, each weighted by its probability."""
    (w1, b1), (w2, b2), (w3, b3) = [lay.get_weights() for lay in model.layers if isinstance(lay, keras.layers.Dense)]
    p = effective_rate(RATE)
    outs, probs = [], []
    for m1 in itertools.product([0, 1], repeat=3):
        for m2 in itertools.product([0, 1], repeat=2):
            m1a, m2a = np.array(m1, float), np.array(m2, float)
            h = np.tanh(x @ w1 + b1) * m1a / (1 - p)
            h = np.tanh(h @ w2 + b2) * m2a / (1 - p)
            outs.append(h @ w3 + b3)
            probs.append(np.prod(np.where(np.r_[m1a, m2a] == 1, 1 - p, p)))
    outs, probs = np.array(outs)[..., 0], np.array(probs)
    mean = probs @ outs
    return mean, probs @ (outs - mean) ** 2


def test_moments_match_exact_enumeration(rng):
    model = _tiny()
    assert dense_chain(model) is not None
    x = rng.normal(size=(5, 2)).astype(np.float32)
    mc = 40000
    mean, var = mc_predict_shared_masks(model, x, mc_num=mc, batch_size=5, progress=False)
    exact_mean, exact_var = _exact_moments(model, x.astype(float))
    np.testing.assert_allclose(mean[:, 0], exact_mean, atol=5 * np.sqrt(exact_var / mc).max())
    # the sample variance of mc draws has relative error about sqrt(2 / mc) (more for skewed outputs)
    np.testing.assert_allclose(var[:, 0], exact_var, rtol=10 * np.sqrt(2 / mc))


def test_agrees_with_per_row_masks_in_distribution(rng):
    model = _tiny(1)
    x = np.repeat(rng.normal(size=(1, 2)).astype(np.float32), 2000, axis=0)
    # one star, 2000 copies in batches of 50: 40 independent sets of 200 masks each
    m_shared, v_shared = mc_predict_shared_masks(model, x, mc_num=200, batch_size=50, progress=False)
    m_row, v_row = mc_predict(model, x, mc_num=200, progress=False)
    exact_mean, exact_var = _exact_moments(model, x[:1].astype(float))
    for m, v in ((m_shared, v_shared), (m_row, v_row)):
        assert abs(m.mean() - exact_mean[0]) < 5 * np.sqrt(exact_var[0] / (200 * 40))
        assert abs(v.mean() / exact_var[0] - 1) < 0.05
    # within a batch every copy saw the same masks: identical results
    assert np.ptp(m_shared[:50]) < 1e-12 and np.ptp(m_shared) > 0


def test_dropout_off_equals_the_keras_model(rng):
    model = _tiny(2, disable=True)
    x = rng.normal(size=(37, 2)).astype(np.float32)
    mean, var = mc_predict_shared_masks(model, x, mc_num=7, batch_size=10, progress=False)
    np.testing.assert_allclose(mean, model(x).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(var, 0, atol=1e-12)


@pytest.mark.parametrize("n,batch_size", [(0, 4), (1, 4), (9, 4), (8, 4), (3, 100)])
def test_any_number_of_rows(rng, n, batch_size):
    model = _tiny(3)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    mean, var = mc_predict_shared_masks(model, x, mc_num=5, batch_size=batch_size, progress=False)
    assert mean.shape == var.shape == (n, 1) and mean.dtype == np.float64
    assert np.isfinite(mean).all() and (var >= 0).all()


def test_seeded_calls_repeat():
    model = _tiny(4)
    x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(10, 2)
    tf.random.set_seed(5)
    a = mc_predict_shared_masks(model, x, mc_num=9, batch_size=4, progress=False)
    b = mc_predict_shared_masks(model, x, mc_num=9, batch_size=4, progress=False)
    np.testing.assert_array_equal(a[0], b[0])


def test_rejects_other_networks_and_bad_arguments(rng):
    inp = keras.Input((4,))
    conv = keras.Model(inp, keras.layers.Dense(1)(MCDropout(0.3)(inp)))  # dropout on the raw input
    assert dense_chain(conv) is None
    with pytest.raises(ValueError, match="not a Dense/MCDropout chain"):
        mc_predict_shared_masks(conv, np.zeros((2, 4)), progress=False)
    model = _tiny()
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        mc_predict_shared_masks(model, np.zeros((2, 3)), progress=False)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="mc_num"):
            mc_predict_shared_masks(model, np.zeros((2, 2)), mc_num=bad, progress=False)
        with pytest.raises(ValueError, match="batch_size"):
            mc_predict_shared_masks(model, np.zeros((2, 2)), batch_size=bad, progress=False)
