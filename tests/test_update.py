"""The compiled optimiser update with the L2 gradients folded in, against Keras' own minimize (not timed)."""
import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal._compat import keras, tf
from astronn_gaiacal.nn.update import FoldedUpdate, folded_l2_kernels


def _toy_model(seed):
    """Dense(L2) -> Dense(L1 kernel, L2 bias) -> Dense(no regulariser): one foldable penalty, two that are not."""
    init = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    x = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh", kernel_initializer=init,
                           kernel_regularizer=keras.regularizers.l2(0.03))(x)
    h = keras.layers.Dense(4, activation="tanh", kernel_initializer=init, kernel_regularizer=keras.regularizers.l1(0.02),
                           bias_regularizer=keras.regularizers.l2(0.05), bias_initializer="ones")(h)
    model = keras.Model(x, keras.layers.Dense(1, kernel_initializer=init)(h))
    opt = keras.optimizers.Adam(learning_rate=0.05)
    opt.jit_compile = True
    model.compile(optimizer=opt, loss="mse")
    return model


def test_only_plain_l2_kernels_are_folded():
    model = _toy_model(0)
    folded = folded_l2_kernels(model)
    assert [var.name for var, _ in folded.values()] == [model.layers[1].kernel.name]
    assert [c for _, c in folded.values()] == [pytest.approx(0.06)]
    assert FoldedUpdate(model).folded == 1


def test_losses_gradients_and_weights_equal_keras_minimize(rng):
    """Three Adam steps: the folded update against ``optimizer.minimize`` on the full loss (an independent path:
    TensorFlow differentiates every penalty)."""
    plain, fold = _toy_model(1), _toy_model(1)
    fold.set_weights(plain.get_weights())
    update = FoldedUpdate(fold)
    x = tf.constant(rng.normal(size=(32, 6)).astype(np.float32))
    y = tf.constant(rng.normal(size=(32, 1)).astype(np.float32))

    @tf.function
    def plain_step():
        with tf.GradientTape() as tape:
            loss = plain.compiled_loss(y, plain(x), regularization_losses=plain.losses)
        plain.optimizer.minimize(loss, plain.trainable_variables, tape=tape)
        return loss

    @tf.function
    def folded_step():
        with tf.GradientTape() as tape:
            reg, extra = update.regularization(tape)
            loss = fold.compiled_loss(y, fold(x), regularization_losses=reg) + extra
        update.apply(tape.gradient(loss, fold.trainable_variables), fold.trainable_variables)
        return loss

    for _ in range(3):
        a, b = plain_step().numpy(), folded_step().numpy()
        np.testing.assert_allclose(b, a, rtol=1e-6)
    assert int(fold.optimizer.iterations) == int(plain.optimizer.iterations) == 3
    start = _toy_model(1).get_weights()
    for w_plain, w_fold, w0 in zip(plain.get_weights(), fold.get_weights(), start):
        assert not np.allclose(w_plain, w0)  # the steps moved every array
        np.testing.assert_allclose(w_fold, w_plain, rtol=1e-5, atol=1e-7)


def test_plugin_step_with_folded_update_equals_minimize(rng):
    """The plugin's training step (fused stacks, dropout off) with and without the folded update: the same
    losses and weights after three steps."""
    from _toy import N_PIX, compiled_toy

    nets = [compiled_toy(0.0, l2=1e-3), compiled_toy(0.0, l2=1e-3)]
    assert nets[0]._update is not None and nets[0]._update.folded >= 4
    nets[1]._update = None  # the plain path: optimizer.minimize on the tape of the full loss
    nets[1].keras_model.set_weights(nets[0].keras_model.get_weights())
    n = 16
    x = {"input": tf.constant(rng.normal(0, 0.1, (n, N_PIX + 1, 1)).astype(np.float32)),
         "labels_err": tf.constant(np.full(n, 0.1, np.float32))}
    y = {"output": tf.constant(rng.normal(1, 0.3, (n, 1)).astype(np.float32))}
    losses = []
    for net in nets:
        step = tf.function(net.custom_train_step)
        losses.append([float(step((x, y))["loss"]) for _ in range(3)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(nets[0].keras_model.get_weights(), nets[1].keras_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, np.abs(b).max()))
