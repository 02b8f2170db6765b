"""The fast MC-dropout path: same distribution as astroNN's, exact when dropout is off, any N (not timed)."""
import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal._compat import keras, tf
from astronn_gaiacal.nn.inference import dropout_disabled, mc_predict
from astronn_gaiacal.models.paper import astronn_twin
from astronn_gaiacal.nn import fast

from _toy import N_PIX, ToyApogeeBCNN

MC = 200


@pytest.fixture(scope="module")
def pair():
    """astroNN's ApogeeDR14GaiaDR2BCNN and the plugin's model (astroNN mode) with identical weights."""
    rng = np.random.default_rng(5)
    theirs, ours = astronn_twin(7514, seed=5)
    theirs.mc_num = ours.mc_num = MC
    spectra = (1 + rng.normal(0, 0.05, (6, 7514))).astype(np.float32)
    return theirs, ours, spectra


def _assert_same_distribution(mean_a, sd_a, mean_b, sd_b, mc):
    """Means within 5 sigma of the MC error of their difference; variances within 5 sigma in log."""
    mean_a, sd_a, mean_b, sd_b = (np.asarray(v, float).ravel() for v in (mean_a, sd_a, mean_b, sd_b))
    z = (mean_a - mean_b) / np.sqrt((sd_a**2 + sd_b**2) / mc)
    assert np.all(np.abs(z) < 5), z
    # log of a sample variance from mc draws has standard deviation ~ sqrt(2 / (mc - 1))
    log_ratio = np.log(sd_a**2 / sd_b**2)
    sigma = np.sqrt(2 * 2 / (mc - 1))
    assert np.all(np.abs(log_ratio) < 5 * sigma), log_ratio
    assert abs(log_ratio.mean()) < 5 * sigma / np.sqrt(log_ratio.size), log_ratio


def test_plugin_predict_agrees_with_astronn_predict_in_distribution(pair):
    theirs, ours, spectra = pair
    x_theirs = np.c_[spectra, np.full((len(spectra), 1), 9.3), np.ones((len(spectra), 3))]
    pred_a, unc_a = theirs.predict(x_theirs)
    pred_b, unc_b = ours.predict(spectra)
    assert sorted(unc_a) == sorted(unc_b) == ["model", "predictive", "total"]
    assert pred_a.shape == pred_b.shape == (len(spectra), 1)
    for key in unc_a:
        assert unc_a[key].shape == unc_b[key].shape
    _assert_same_distribution(pred_a, unc_a["model"], pred_b, unc_b["model"], MC)
    # the predictive (aleatoric) part is exp(mean log-variance): its MC error is small but not zero
    np.testing.assert_allclose(unc_b["predictive"], unc_a["predictive"], rtol=0.05)


def test_fast_walker_on_astronn_graph_agrees_with_astronn_fast_mc_inference(pair):
    """The same Keras model (astroNN's own prediction graph) through both MC paths."""
    from astroNN.nn.layers import FastMCInference

    theirs, _, spectra = pair
    x = np.c_[spectra, np.full((len(spectra), 1), 0.0), np.zeros((len(spectra), 3))][..., None].astype(np.float32)
    ref = np.asarray(FastMCInference(MC)(theirs.keras_model_predict).predict(x, verbose=0))
    mean, var = mc_predict(theirs.keras_model_predict, x, mc_num=MC, progress=False)
    assert mean.shape == var.shape == (len(spectra), 2)
    _assert_same_distribution(ref[:, 0, 0], np.sqrt(ref[:, 0, 1]), mean[:, 0], np.sqrt(var[:, 0]), MC)
    _assert_same_distribution(ref[:, 1, 0], np.sqrt(ref[:, 1, 1]), mean[:, 1], np.sqrt(var[:, 1]), MC)


def test_fast_path_agrees_with_the_plain_tiled_path(pair):
    _, ours, spectra = pair
    model = ours.keras_model_predict
    m_fast, v_fast = mc_predict(model, spectra, mc_num=MC, progress=False)
    m_plain, v_plain = mc_predict(model, spectra, mc_num=MC, progress=False, fast_graph=False, xla=False)
    _assert_same_distribution(m_plain[:, 0], np.sqrt(v_plain[:, 0]), m_fast[:, 0], np.sqrt(v_fast[:, 0]), MC)


def test_deterministic_part_equals_the_keras_model(pair):
    _, ours, spectra = pair
    model = ours.keras_model_predict
    with dropout_disabled(model):
        expected = model(spectra).numpy()
        mean, var = mc_predict(model, spectra, mc_num=3, progress=False)
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(var, 0.0)


@pytest.fixture(scope="module")
def toy():
    net = ToyApogeeBCNN(offset="multivariate")
    net.verbose = 0
    width = N_PIX + 1 + 3
    net._input_shape, net._labels_shape = {"input": (width, 1)}, {"output": 1}
    net.input_mean, net.input_std = {"input": np.ones(width)}, {"input": np.ones(width)}
    net.labels_std = {"output": np.array([1.0])}
    net.compile()
    return net


@pytest.mark.parametrize("n, batch_size", [(7, 3), (1, 4), (5, 5), (1, None)])
def test_any_number_of_inputs_and_batch_sizes(toy, rng, n, batch_size):
    model = toy.keras_model_predict
    x = (1 + rng.normal(0, 0.05, (n, N_PIX))).astype(np.float32)
    with dropout_disabled(model):
        expected = model(x).numpy()
        mean, var = mc_predict(model, x, mc_num=4, batch_size=batch_size, progress=False)
    assert mean.shape == var.shape == (n, 2)
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)
    # with dropout on, every input gets its own passes: the variances differ from star to star
    mean_mc, var_mc = mc_predict(model, x, mc_num=50, batch_size=batch_size, progress=False)
    assert np.all(var_mc > 0)


def test_zero_inputs_give_empty_results(toy):
    mean, var = mc_predict(toy.keras_model_predict, np.empty((0, N_PIX)), mc_num=10, progress=False)
    assert mean.shape == var.shape == (0, 2)
    fakemag, unc = toy.predict(np.empty((0, N_PIX)))
    assert fakemag.shape == (0, 1)
    assert sorted(unc) == ["model", "predictive", "total"] and all(v.shape == (0, 1) for v in unc.values())
    zp, zp_err = toy.predict_zeropoint(np.empty((0, 3)))
    assert zp.shape == zp_err.shape == (0,)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_mc_num_and_batch_size_are_rejected(toy, bad):
    with pytest.raises(ValueError, match="mc_num"):
        mc_predict(toy.keras_model_predict, np.ones((2, N_PIX)), mc_num=bad, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        mc_predict(toy.keras_model_predict, np.ones((2, N_PIX)), mc_num=2, batch_size=bad, progress=False)


@pytest.mark.parametrize("padding", ["same", "valid", "causal"])
@pytest.mark.parametrize("kernel_size, c_in, c_out", [(8, 1, 2), (8, 2, 4), (3, 3, 1)])
def test_conv1d_direct_equals_tensorflow(rng, padding, kernel_size, c_in, c_out):
    layer = keras.layers.Conv1D(c_out, kernel_size, padding=padding)
    x = rng.normal(size=(3, 50, c_in)).astype(np.float32)
    expected = layer(x).numpy()
    got = fast.conv1d_direct(tf.constant(x), layer.kernel, layer.bias, padding=padding).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert fast.conv1d_is_small(layer)


def test_max_pool1d_is_bit_for_bit(rng):
    x = rng.normal(size=(4, 7514, 4)).astype(np.float32)
    expected = keras.layers.MaxPooling1D(4)(x).numpy()
    np.testing.assert_array_equal(fast.max_pool1d(tf.constant(x), 4).numpy(), expected)


def test_dropout_keeps_the_right_fraction_and_scale():
    gen = tf.random.Generator.from_seed(3, alg="philox")
    x = tf.ones((2000, 1000))
    y = fast.dropout(x, 0.3, gen).numpy()
    kept = y != 0
    n = kept.size
    p_keep = 1 - fast.effective_rate(0.3)
    assert abs(fast.effective_rate(0.3) - 0.3) < 2**-16
    assert abs(kept.mean() - p_keep) < 5 * np.sqrt(p_keep * (1 - p_keep) / n)
    np.testing.assert_allclose(np.unique(y[kept]), 1 / 0.7, rtol=1e-6)
    # neighbouring entries (the two halves of one 32-bit draw) are independent
    a, b = kept.ravel()[0::2], kept.ravel()[1::2]
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)


def test_bf16_flag_is_close_but_off_by_default(toy, rng):
    assert ToyApogeeBCNN.inference_bf16 is False
    model = toy.keras_model_predict
    x = (1 + rng.normal(0, 0.05, (3, N_PIX))).astype(np.float32)
    with dropout_disabled(model):
        full, _ = mc_predict(model, x, mc_num=2, progress=False)
        half, _ = mc_predict(model, x, mc_num=2, progress=False, bf16=True)
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.05)
