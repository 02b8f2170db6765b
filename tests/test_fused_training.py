"""The fused convolution stack of the training step, forward and backward (not timed)."""
import numpy as np
import pytest

pytest.importorskip("numba")  # the fused kernels; the TensorFlow path is tested without it (test_device)

import astronn_gaiacal  # noqa: E402,F401
from astronn_gaiacal._compat import keras, tf  # noqa: E402
from astronn_gaiacal.nn import fused_training as ft  # noqa: E402
from astronn_gaiacal.nn.fused_training import ConvStackSpec, conv_stack, conv_stack_backward, conv_stack_forward  # noqa: E402
from astronn_gaiacal.nn.layers import FastMCDropout  # noqa: E402

KEEP = 1 - round(0.3 * 2**16) / 2**16  # the 16-bit mask law of astronn_gaiacal.nn.fast.dropout


def _weights(rng, spec, scale=0.4):
    k, c0, c1, c2 = spec.kernel_size, spec.in_channels, spec.filters1, spec.filters2
    return [rng.normal(0, scale, s).astype(np.float32) for s in ((k, c0, c1), (c1,), (k, c1, c2), (c2,))]


def _reference(x, weights, spec, mask1=None, mask2=None, rate1=0.0, rate2=0.0):
    """The stack by TensorFlow's own operations, with given keep-masks; returns a function of the weights."""
    n = spec.pooled

    def run(w1, b1, w2, b2):
        h = tf.nn.relu(tf.nn.conv1d(x, w1, 1, "SAME") + b1)
        if mask1 is not None:
            h = h * tf.cast(mask1, tf.float32) / (1 - rate1)
        y = tf.nn.relu(tf.nn.conv1d(h, w2, 1, "SAME") + b2)
        y = tf.reduce_max(tf.reshape(y[:, : n * spec.pool], [x.shape[0], n, spec.pool, spec.filters2]), axis=2)
        y = tf.reshape(y, [x.shape[0], -1])
        if mask2 is not None:
            y = y * tf.cast(mask2, tf.float32) / (1 - rate2)
        return y

    return run


SPECS = [
    ConvStackSpec(7514, 8, 1, 2, 4, 4),  # the paper's network
    ConvStackSpec(61, 3, 2, 3, 2, 3),  # odd kernel, pooling drops the last pixel
    ConvStackSpec(40, 4, 1, 1, 2, 5),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"L{s.length}k{s.kernel_size}")
@pytest.mark.parametrize("rates", [(0.0, 0.0), (0.3, 0.3)])
def test_forward_and_gradients_equal_tensorflow(rng, spec, rates):
    """Output and all four weight gradients against TensorFlow's operations with the same masks."""
    b = 5
    x = rng.normal(0.5, 1.0, (b, spec.length, spec.in_channels)).astype(np.float32)
    weights = _weights(rng, spec)
    rate1, rate2 = rates
    key = 987654321
    out, arg = conv_stack_forward(x, *weights, spec, key, rate1, rate2)
    mask1, mask2 = ft.conv_stack_masks(spec, key, rate1, rate2, b)
    if rates == (0.0, 0.0):
        assert mask1.all() and mask2.all()
    variables = [tf.Variable(w) for w in weights]
    upstream = rng.normal(size=out.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        ref = _reference(tf.constant(x), weights, spec, mask1, mask2, rate1, rate2)(*variables)
        loss = tf.reduce_sum(ref * upstream)
    expected = tape.gradient(loss, variables)
    assert out.shape == (b, spec.pooled * spec.filters2)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
    grads = conv_stack_backward(x, arg, upstream, weights[0], weights[1], weights[2], spec, key, rate1, rate2)
    for name, got, want in zip(("kernel1", "bias1", "kernel2", "bias2"), grads, expected):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)


def test_masks_follow_the_16_bit_law_and_do_not_repeat():
    spec = SPECS[0]
    m1, m2 = ft.conv_stack_masks(spec, 42, 0.3, 0.3, 8)
    for keep in (m1.reshape(8, -1), m2):
        z = (keep.mean() - KEEP) / np.sqrt(KEEP * (1 - KEEP) / keep.size)
        assert abs(z) < 5
        d = keep.astype(float) - KEEP
        assert abs(np.mean(d[:, 1:] * d[:, :-1]) / (KEEP * (1 - KEEP))) < 5 / np.sqrt(keep.size)
        assert not (keep[0] == keep[1]).all()  # each star its own masks
    other, _ = ft.conv_stack_masks(spec, 43, 0.3, 0.3, 8)
    assert 0.5 < (other == m1).mean() < 0.65  # another key: independent masks (P(equal) = 0.58)
    again, _ = ft.conv_stack_masks(spec, 42, 0.3, 0.3, 8)
    np.testing.assert_array_equal(again, m1)


def test_thread_split_does_not_change_results(rng):
    spec = SPECS[1]
    x = rng.normal(0.5, 1.0, (7, spec.length, spec.in_channels)).astype(np.float32)
    weights = _weights(rng, spec)
    one = conv_stack_forward(x, *weights, spec, 5, 0.3, 0.3, threads=1)
    three = conv_stack_forward(x, *weights, spec, 5, 0.3, 0.3, threads=3)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)
    g = rng.normal(size=one[0].shape).astype(np.float32)
    g1 = conv_stack_backward(x, one[1], g, *weights[:3], spec, 5, 0.3, 0.3, threads=1)
    g3 = conv_stack_backward(x, one[1], g, *weights[:3], spec, 5, 0.3, 0.3, threads=3)
    for a, b in zip(g1, g3):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_empty_batch_and_bad_shapes(rng):
    spec = SPECS[1]
    weights = _weights(rng, spec)
    out, arg = conv_stack_forward(np.zeros((0, spec.length, spec.in_channels), np.float32), *weights, spec, 1, 0.3, 0.3)
    assert out.shape == (0, spec.outputs) and arg.shape == (0, spec.filters2, spec.pooled)
    grads = conv_stack_backward(np.zeros((0, spec.length, spec.in_channels)), arg, np.zeros((0, spec.outputs)),
                                *weights[:3], spec, 1, 0.3, 0.3)
    assert all(not g.any() for g in grads)
    with pytest.raises(ValueError, match="x must have shape"):
        conv_stack_forward(np.zeros((2, spec.length + 1, spec.in_channels)), *weights, spec, 1, 0.3, 0.3)
    with pytest.raises(ValueError, match="kernel2 must have shape"):
        conv_stack_forward(np.zeros((2, spec.length, spec.in_channels)), weights[0], weights[1], weights[0],
                           weights[3], spec, 1, 0.3, 0.3)
    with pytest.raises(ValueError, match="grad must have shape"):
        conv_stack_backward(np.zeros((2, spec.length, spec.in_channels)), np.zeros((2, spec.filters2, spec.pooled)),
                            np.zeros((2, 3)), *weights[:3], spec, 1, 0.3, 0.3)
    with pytest.raises(ValueError, match="pool"):
        ft.kernel_source(ConvStackSpec(3, 3, 1, 1, 1, 4))


def test_tensorflow_operation_gradient(rng):
    """``conv_stack`` inside a tape: the gradient TensorFlow sees is the kernel's (dropout off)."""
    spec = SPECS[1]
    x = tf.constant(rng.normal(0.5, 1.0, (4, spec.length, spec.in_channels)).astype(np.float32))
    variables = [tf.Variable(w) for w in _weights(rng, spec)]
    upstream = tf.constant(rng.normal(size=(4, spec.outputs)).astype(np.float32))

    @tf.function
    def both():
        with tf.GradientTape(persistent=True) as tape:
            fused_loss = tf.reduce_sum(conv_stack(x, *variables, spec, 0.0, 0.0) * upstream)
            ref_loss = tf.reduce_sum(_reference(x, None, spec)(*variables) * upstream)
        return tape.gradient(fused_loss, variables), tape.gradient(ref_loss, variables), fused_loss, ref_loss

    got, want, fused_loss, ref_loss = both()
    np.testing.assert_allclose(fused_loss.numpy(), ref_loss.numpy(), rtol=1e-5)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-4 * np.abs(w.numpy()).max())


def test_tensorflow_operation_is_reproducible_with_the_global_seed(rng):
    spec = SPECS[1]
    x = tf.constant(rng.normal(0.5, 1.0, (4, spec.length, spec.in_channels)).astype(np.float32))
    weights = [tf.constant(w) for w in _weights(rng, spec)]
    tf.random.set_seed(3)
    a = conv_stack(x, *weights, spec, 0.3, 0.3).numpy()
    b = conv_stack(x, *weights, spec, 0.3, 0.3).numpy()
    tf.random.set_seed(3)
    c = conv_stack(x, *weights, spec, 0.3, 0.3).numpy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def _paper_like(spectrum, first_input=None, shared_dropout=False):
    """Conv(2) -> ReLU -> dropout -> Conv(4) -> ReLU -> pool -> Flatten -> dropout -> Dense, with variations."""
    from astronn_gaiacal.nn.layers import BlockConv1D, FastMaxPooling1D

    x = keras.layers.Reshape((spectrum.shape[1], 1))(spectrum if first_input is None else first_input)
    x = keras.layers.Activation("relu")(BlockConv1D(2, 8, padding="same")(x))
    d = FastMCDropout(0.3)(x)
    x = keras.layers.Activation("relu")(BlockConv1D(4, 8, padding="same")(d))
    x = FastMCDropout(0.3)(keras.layers.Flatten()(FastMaxPooling1D(4)(x)))
    out = keras.layers.Dense(1)(x)
    if shared_dropout:  # the first dropout's output also feeds another layer
        out = keras.layers.Add()([out, keras.layers.Dense(1)(keras.layers.Flatten()(d))])
    return out


def test_stack_finder():
    from astronn_gaiacal.models import ApogeeGaiaBCNN

    spectra = keras.Input((64,))
    plain = keras.Model(spectra, _paper_like(spectra))
    (stack,) = ft.conv_stacks(plain).values()
    assert stack.spec == ConvStackSpec(64, 8, 1, 2, 4, 4) and stack.rate1 == stack.rate2 == 0.3
    assert not ft.conv_stacks(keras.Model(spectra, _paper_like(spectra, shared_dropout=True)))
    learned = keras.layers.Dense(64)(spectra)  # a trained layer before the stack: needs an input gradient
    assert not ft.conv_stacks(keras.Model(spectra, _paper_like(spectra, first_input=learned)))
    net = ApogeeGaiaBCNN(offset="constant")
    lum_in = keras.Input((7514,))
    lum = keras.Model(lum_in, net.luminosity_network(lum_in))
    (stack,) = ft.conv_stacks(lum).values()
    assert stack.spec == SPECS[0]
    outer_in = keras.Input((7514,))
    outer = keras.Model(outer_in, lum(outer_in))
    assert not ft.conv_stacks(outer) and ft.has_conv_stacks(outer)  # found in the nested model


def _compiled_toy(dropout_rate, **attrs):
    from _toy import compiled_toy

    return compiled_toy(dropout_rate, **attrs)


def test_model_training_step_fused_equals_layers(rng):
    """The plugin's loss and gradients with the stack fused equal those of its Keras layers (dropout off)."""
    from _toy import N_PIX

    fused, layers = _compiled_toy(0.0), _compiled_toy(0.0, train_fused=False)
    assert fused._fused_stacks and not layers._fused_stacks
    layers.keras_model.set_weights(fused.keras_model.get_weights())
    n = 16
    x = {"input": tf.constant(rng.normal(0, 0.1, (n, N_PIX + 1, 1)).astype(np.float32)),
         "labels_err": tf.constant(np.full(n, 0.1, np.float32))}
    y = {"output": tf.constant(rng.normal(1, 0.3, (n, 1)).astype(np.float32))}
    results = []
    for net in (fused, layers):
        with tf.GradientTape() as tape:
            loss, *_ = net._step_loss((x, y), training=True)
        grads = tape.gradient(loss, net.keras_model.trainable_variables)
        results.append((loss.numpy(), [g.numpy() for g in grads]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    names = [v.name for v in fused.keras_model.trainable_variables]
    for name, a, b in zip(names, results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * np.abs(b).max() + 1e-12, err_msg=name)


def test_fused_path_only_where_it_applies():
    from astronn_gaiacal.models import DenseGaiaBNN

    assert not _compiled_toy(0.3, jit_compile=True)._fused_stacks
    dense = DenseGaiaBNN(offset="constant")
    dense.verbose = 0
    dense._input_shape, dense._labels_shape = {"input": (9, 1)}, {"output": 1}
    dense.input_mean, dense.input_std = {"input": np.zeros(9)}, {"input": np.ones(9)}
    dense.labels_mean, dense.labels_std = {"output": np.array([0.0])}, {"output": np.array([1.0])}
    dense.spectrum_length = 8
    dense.compile()
    assert not dense._fused_stacks
