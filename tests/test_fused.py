"""The fused dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout kernel (not timed)."""
import numpy as np
import pytest

pytest.importorskip("numba")  # the fused kernels; the TensorFlow path is tested without it (test_device)

import astronn_gaiacal  # noqa: E402,F401
from astronn_gaiacal._compat import keras, tf  # noqa: E402
from astronn_gaiacal.nn.inference import _fusions, _Walker, mc_predict  # noqa: E402
from astronn_gaiacal.nn import fused  # noqa: E402
from astronn_gaiacal.nn.fused import ConvPoolSpec, mc_conv_pool  # noqa: E402

KEEP = 1 - round(0.3 * 2**16) / 2**16  # the 16-bit mask law of astronn_gaiacal.nn.fast.dropout


def _spec(length, k, cin, cout, pool, padding="same", relu=True):
    left = {"same": (k - 1) // 2, "valid": 0, "causal": k - 1}[padding]
    out_len = length - k + 1 if padding == "valid" else length
    return ConvPoolSpec(length, k, cin, cout, left, out_len, pool, relu)


def _tensorflow_reference(x, kernel, bias, spec, padding):
    """The same stretch with dropout off, by TensorFlow's own layers' operations."""
    y = tf.nn.conv1d(x, kernel, stride=1, padding="VALID" if padding == "valid" else "SAME") if padding != "causal" \
        else tf.nn.conv1d(tf.pad(x, [[0, 0], [spec.kernel_size - 1, 0], [0, 0]]), kernel, 1, "VALID")
    y = y + bias
    if spec.relu:
        y = tf.nn.relu(y)
    y = tf.nn.max_pool1d(y, spec.pool, spec.pool, "VALID")
    return tf.reshape(y, [x.shape[0], -1]).numpy()


@pytest.mark.parametrize("length, k, cin, cout, pool, padding, relu", [
    (64, 8, 2, 4, 4, "same", True),
    (37, 3, 1, 2, 2, "valid", True),
    (30, 5, 3, 2, 3, "causal", False),
    (41, 4, 2, 3, 4, "same", True),  # even kernel, pooling drops the last pixel
])
def test_dropout_free_part_equals_tensorflow(rng, length, k, cin, cout, pool, padding, relu):
    spec = _spec(length, k, cin, cout, pool, padding, relu)
    x = rng.normal(size=(3, length, cin)).astype(np.float32)
    kernel = rng.normal(size=(k, cin, cout)).astype(np.float32)
    bias = rng.normal(size=cout).astype(np.float32)
    out = mc_conv_pool(x, kernel, bias, spec, key=7, reps=2, rate_in=0.0, rate_out=0.0)
    ref = _tensorflow_reference(x, kernel, bias, spec, padding)
    assert out.shape == (6, spec.pooled * cout)
    np.testing.assert_allclose(out[:3], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[3:], out[:3])  # rows are pass-major (tf.tile order)


def _keep_stats(keep):
    n = keep.size
    z = (keep.mean() - KEEP) / np.sqrt(KEEP * (1 - KEEP) / n)
    d = keep.astype(float) - KEEP
    var = KEEP * (1 - KEEP)
    along = np.mean(d[:, 1:] * d[:, :-1]) / var  # neighbouring values of one pass
    across = np.mean(d[1:] * d[:-1]) / var  # the same value in consecutive rows (passes / inputs)
    return z, along, across, 1 / np.sqrt(n)


def test_output_dropout_law():
    """All-positive activations: an output value is zero exactly when it is dropped."""
    spec = _spec(64, 3, 1, 2, 2)
    x = np.ones((5, 64, 1), np.float32)
    out = mc_conv_pool(x, np.ones((3, 1, 2), np.float32), np.ones(2, np.float32), spec, key=11, reps=4000,
                       rate_in=0.0, rate_out=0.3)
    keep = out != 0
    z, along, across, tol = _keep_stats(keep)
    assert abs(z) < 5 and abs(along) < 5 * tol and abs(across) < 5 * tol
    # kept values are scaled by 1 / (1 - rate), as tf.nn.dropout does
    full = mc_conv_pool(x, np.ones((3, 1, 2), np.float32), np.ones(2, np.float32), spec, 11, 1, 0.0, 0.0)
    np.testing.assert_allclose(out[keep], np.tile(full, (4000, 1))[keep] / 0.7, rtol=1e-6)


def test_input_dropout_law():
    """A 1-tap identity convolution and pool 1: the output is the input dropout itself."""
    spec = _spec(50, 1, 1, 1, 1)
    x = np.full((2, 50, 1), 2.0, np.float32)
    out = mc_conv_pool(x, np.ones((1, 1, 1), np.float32), np.zeros(1, np.float32), spec, key=3, reps=20000,
                       rate_in=0.3, rate_out=0.0)
    np.testing.assert_allclose(np.unique(out), [0, 2 / 0.7], rtol=1e-6)
    z, along, across, tol = _keep_stats(out != 0)
    assert abs(z) < 5 and abs(along) < 5 * tol and abs(across) < 5 * tol


def test_masks_depend_on_the_key_only(rng):
    spec = _spec(64, 8, 2, 4, 4)
    x = np.abs(rng.normal(size=(2, 64, 2))).astype(np.float32)
    kernel = np.abs(rng.normal(size=(8, 2, 4))).astype(np.float32)
    bias = np.ones(4, np.float32)
    one = mc_conv_pool(x, kernel, bias, spec, 5, 50, 0.3, 0.3, threads=1)
    two = mc_conv_pool(x, kernel, bias, spec, 5, 50, 0.3, 0.3, threads=2)
    other = mc_conv_pool(x, kernel, bias, spec, 6, 50, 0.3, 0.3, threads=2)
    np.testing.assert_array_equal(one, two)  # counter-based: the thread split does not matter
    assert np.mean(one == other) < 0.9
    # independent passes of one input differ; the two inputs' passes are not copies of each other
    assert not np.array_equal(one[0], one[2]) and not np.array_equal(one[0], one[1])


def _splitmix_uint16(key, first_word, n_words):
    """The documented mask stream, computed independently: SplitMix64 of a keyed counter, four 16-bit numbers per word."""
    w = np.arange(first_word, first_word + n_words, dtype=np.uint64)
    z = np.uint64(key) + w * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z.view(np.uint16)  # little-endian: bits 0-15 first


def test_output_mask_is_the_documented_stream(rng):
    spec = _spec(64, 8, 2, 4, 4)
    x = np.abs(rng.normal(size=(3, 64, 2))).astype(np.float32) + 0.1
    kernel = np.abs(rng.normal(size=(8, 2, 4))).astype(np.float32)
    bias = np.ones(4, np.float32)  # every pooled value > 0: zeros are the output dropout's alone
    key, reps = 2**63 + 12345, 5
    out = mc_conv_pool(x, kernel, bias, spec, key, reps, 0.0, 0.3, threads=2)
    words_in = (spec.in_channels * spec.pool * spec.columns + 3) // 4
    words_out = (spec.pooled * spec.filters + 3) // 4
    threshold = fused.keep_threshold(0.3)
    for row in range(reps * 3):
        u = _splitmix_uint16(key, row * (words_in + words_out) + words_in, words_out)[: out.shape[1]]
        np.testing.assert_array_equal(out[row] == 0, u < threshold)


def test_outputs_are_aligned_for_tensorflow(rng):
    shapes = [(3, 5), (7, 2, 3), (0, 4), (0,), ()]
    for shape, dtype in [(s, t) for s in shapes for t in (np.float32, np.int8, np.float64)] * 20:
        a = fused.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % fused.TENSOR_ALIGNMENT == 0, (shape, dtype)
    spec = _spec(64, 8, 2, 4, 4)
    out = mc_conv_pool(np.ones((2, 64, 2)), np.ones((8, 2, 4)), np.zeros(4), spec, 1, 3, 0.3, 0.3)
    assert out.ctypes.data % fused.TENSOR_ALIGNMENT == 0


def test_no_rows_and_bad_arguments(rng):
    spec = _spec(64, 8, 2, 4, 4)
    kernel, bias = np.ones((8, 2, 4), np.float32), np.zeros(4, np.float32)
    assert mc_conv_pool(np.ones((0, 64, 2)), kernel, bias, spec, 1, 10, 0.3, 0.3).shape == (0, 64)
    with pytest.raises(ValueError, match="x must have shape"):
        mc_conv_pool(np.ones((2, 63, 2)), kernel, bias, spec, 1, 10, 0.3, 0.3)
    with pytest.raises(ValueError, match="kernel must have shape"):
        mc_conv_pool(np.ones((2, 64, 2)), kernel[:7], bias, spec, 1, 10, 0.3, 0.3)
    with pytest.raises(ValueError, match="dropout rate"):
        mc_conv_pool(np.ones((2, 64, 2)), kernel, bias, spec, 1, 10, 1.0, 0.3)
    with pytest.raises(ValueError, match="pool"):
        ConvPoolSpec(4, 3, 1, 1, 1, 4, 8, True).check()


def test_kernels_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(fused.CACHE_ENV, str(tmp_path))
    spec = _spec(20, 3, 1, 1, 1)
    monkeypatch.setattr(fused, "_KERNELS", {})
    out = mc_conv_pool(np.ones((1, 20, 1), np.float32), np.ones((3, 1, 1), np.float32), np.zeros(1, np.float32),
                       spec, 1, 1, 0.0, 0.0)
    np.testing.assert_allclose(out[0], [2.0] + [3.0] * 18 + [2.0])  # 'same' padding: the end pixels see two taps
    written = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.endswith(".py") for name in written)
    assert not any(name.endswith(".partial") for name in written)


# ----------------------------------------------------------------------------- in the MC-dropout walker
def _net(activation="relu", share_dropout=False, length=64):
    from astroNN.nn.layers import MCDropout

    inp = keras.Input((length,))
    x = keras.layers.Reshape((length, 1))(inp)
    x = keras.layers.Conv1D(2, 8, padding="same")(x)
    d0 = MCDropout(0.3)(keras.layers.Activation("relu")(x))
    x = keras.layers.Conv1D(4, 8, padding="same")(d0)
    x = keras.layers.MaxPooling1D(4)(keras.layers.Activation(activation)(x))
    x = MCDropout(0.3)(keras.layers.Flatten()(x))
    x = keras.layers.Dense(16, activation="relu")(x)
    if share_dropout:  # the dropout output also feeds another branch: the chain cannot be fused
        x = keras.layers.Concatenate()([x, keras.layers.Flatten()(d0)])
    out = keras.layers.Dense(2)(x)
    keras.utils.set_random_seed(3)
    return keras.Model(inp, out)


@pytest.mark.parametrize("activation, share, fusable", [("relu", False, True), ("linear", False, True),
                                                        ("tanh", False, False), ("relu", True, False)])
def test_walker_finds_exactly_the_fusable_chains(activation, share, fusable):
    model = _net(activation, share)
    chains = _fusions(model, _Walker(10, None, False).plain_dropout)
    assert len(chains) == int(fusable)
    if fusable:
        (chain,) = chains.values()
        assert (chain.rate_in, chain.rate_out, chain.spec.pooled * chain.spec.filters) == (0.3, 0.3, 64)
        assert chain.spec.relu == (activation == "relu")


def test_fused_and_unfused_walkers_agree_in_distribution(rng):
    from test_inference_speed import _assert_same_distribution

    model = _net()
    x = (1 + rng.normal(0, 0.3, (5, 64))).astype(np.float32)
    mc = 3000
    mean_a, var_a = mc_predict(model, x, mc_num=mc, progress=False, fused_kernels=True)
    mean_b, var_b = mc_predict(model, x, mc_num=mc, progress=False, fused_kernels=False)
    _assert_same_distribution(mean_a, np.sqrt(var_a), mean_b, np.sqrt(var_b), mc)
    tf.random.set_seed(4)
    again = mc_predict(model, x, mc_num=50, progress=False)
    tf.random.set_seed(4)
    np.testing.assert_array_equal(again[0], mc_predict(model, x, mc_num=50, progress=False)[0])
