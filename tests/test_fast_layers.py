"""BlockConv1D, FastMaxPooling1D and FastMCDropout against the Keras/astroNN layers they replace."""
import numpy as np
import pytest

from astronn_gaiacal._compat import keras, tf
from astronn_gaiacal.nn.layers import BlockConv1D, FastMaxPooling1D, FastMCDropout


def _grads(layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.sin(y))  # a non-trivial upstream gradient
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_variables])]


@pytest.mark.parametrize("padding", ["same", "valid", "causal"])
@pytest.mark.parametrize("kernel_size,c_in,filters,length,block", [(8, 1, 2, 7514, None), (8, 2, 4, 101, None),
                                                                  (3, 3, 5, 40, 2), (8, 4, 1, 9, 16), (1, 2, 3, 17, None)])
def test_block_conv_equals_conv1d_values_and_gradients(rng, padding, kernel_size, c_in, filters, length, block):
    x = rng.normal(size=(3, length, c_in)).astype(np.float32)
    fast = BlockConv1D(filters, kernel_size, padding=padding, block_size=block, activation="relu")
    ref = keras.layers.Conv1D(filters, kernel_size, padding=padding, activation="relu")
    fast(x), ref(x)
    ref.set_weights([w + 0.1 for w in fast.get_weights()])
    fast.set_weights(ref.get_weights())
    y_fast, g_fast = _grads(fast, x)
    y_ref, g_ref = _grads(ref, x)
    assert y_fast.shape == y_ref.shape
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_fast, g_ref):  # d/dx, d/dkernel, d/dbias
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_block_conv_toeplitz_matrix_by_hand():
    layer = BlockConv1D(1, 2, padding="valid", block_size=2)
    layer.build((None, 5, 1))
    layer.set_weights([np.array([[[1.0]], [[2.0]]], np.float32), np.zeros(1, np.float32)])
    # y_i = x_i + 2 x_{i+1}: rows are input positions 0..3 of a block pair, columns the two outputs
    np.testing.assert_array_equal(layer.toeplitz_kernel().numpy(), [[1, 0], [2, 1], [0, 2], [0, 0]])


def test_block_conv_weights_and_config_are_conv1d_ones(rng, tmp_path):
    fast = BlockConv1D(4, 8, padding="same", kernel_regularizer=keras.regularizers.l2(1e-3), name="c")
    fast.build((None, 50, 2))
    assert [w.shape for w in fast.weights] == [(8, 2, 4), (4,)]
    again = BlockConv1D.from_config(fast.get_config())
    assert again.block_size == fast.block_size == 8 and again.padding == "same"
    inp = keras.Input((50, 2))
    model = keras.Model(inp, BlockConv1D(4, 8, padding="same")(inp))
    path = str(tmp_path / "m.h5")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rng.normal(size=(2, 50, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert isinstance(loaded.layers[1], BlockConv1D)


def test_block_conv_rejects_small_blocks_and_short_inputs():
    with pytest.raises(ValueError, match="block_size"):
        BlockConv1D(2, 8, block_size=4)
    with pytest.raises(ValueError, match="input size"):
        BlockConv1D(2, 8, padding="valid")(np.zeros((1, 5, 1), np.float32))


def test_block_conv_falls_back_for_strides(rng):
    x = rng.normal(size=(2, 30, 2)).astype(np.float32)
    fast, ref = BlockConv1D(3, 4, strides=2), keras.layers.Conv1D(3, 4, strides=2)
    fast(x), ref(x)
    ref.set_weights(fast.get_weights())
    np.testing.assert_array_equal(fast(x).numpy(), ref(x).numpy())


def test_fast_max_pool_bit_for_bit_and_gradient(rng):
    x = rng.normal(size=(3, 7514, 4)).astype(np.float32)
    fast, ref = FastMaxPooling1D(pool_size=4), keras.layers.MaxPooling1D(pool_size=4)
    y_fast, (g_fast,) = _grads(fast, x)
    y_ref, (g_ref,) = _grads(ref, x)
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(g_fast, g_ref)  # no ties in continuous random input
    overlapping = FastMaxPooling1D(pool_size=4, strides=2)
    np.testing.assert_array_equal(overlapping(x).numpy(), keras.layers.MaxPooling1D(4, strides=2)(x).numpy())


def test_fast_dropout_rate_scale_and_independence():
    layer = FastMCDropout(0.3)
    x = tf.ones((400, 1001))  # odd size: the last 16-bit half is discarded
    y = layer(x).numpy()
    kept = y != 0
    n = kept.size
    # binomial test of the drop fraction against the effective rate (0.3000031)
    assert layer.effective_rate == 19661 / 2**16
    z = ((~kept).sum() - n * layer.effective_rate) / np.sqrt(n * 0.3 * 0.7)
    assert abs(z) < 4.5
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    # neighbouring entries (the two halves of one 32-bit draw) are uncorrelated
    flat = kept.ravel().astype(float)
    r = np.corrcoef(flat[0:-1:2], flat[1::2])[0, 1]
    assert abs(r) < 4.5 / np.sqrt(n / 2)
    # a fresh mask on every call, as MC dropout needs
    assert (layer(x).numpy() != y).any()
    # mean preserved: E[y] = x
    assert abs(y.mean() - 1) < 4.5 * np.sqrt(0.3 / 0.7 / n)


def test_fast_dropout_is_reproducible_with_the_global_seed_and_can_be_disabled():
    x = tf.ones((50, 64))
    keras.utils.set_random_seed(11)
    a = tf.function(lambda t: FastMCDropout(0.5, name="d1")(t))(x).numpy()
    keras.utils.set_random_seed(11)
    b = tf.function(lambda t: FastMCDropout(0.5, name="d2")(t))(x).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(FastMCDropout(0.3, disable=True)(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="noise_shape"):
        FastMCDropout(0.3, noise_shape=(None, 1))
    with pytest.raises(ValueError, match="rate"):
        FastMCDropout(1.0)


def test_fast_dropout_mask_gradient(rng):
    layer = FastMCDropout(0.3)
    x = tf.constant(rng.normal(size=(20, 30)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    g = tape.gradient(y, x).numpy()
    keep = y.numpy() != 0
    np.testing.assert_allclose(g[keep], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(g[~keep], 0)


def test_paper_network_uses_the_fast_layers_and_keeps_astronn_structure():
    from astronn_gaiacal.models import ApogeeGaiaBCNN

    net = ApogeeGaiaBCNN(offset="constant")
    spectra = keras.Input((7514,))
    fakemag, _ = net.luminosity_network(spectra)
    layers = keras.Model(spectra, fakemag).layers
    kinds = [type(lay).__name__ for lay in layers]
    assert kinds.count("BlockConv1D") == 2 and kinds.count("FastMaxPooling1D") == 1
    assert kinds.count("FastMCDropout") == 3
