"""Monte Carlo dropout inference, streamed in batches.

Each batch of ``B`` inputs is tiled ``mc_num`` times and pushed through the
stochastic model in one compiled call; the mean and variance over the passes
are reduced in-graph.  Memory is bounded by ``batch_size * mc_num`` rows
whatever the number of inputs.
"""
import contextlib

import numpy as np
from tqdm.auto import tqdm

from ._compat import tf

DEFAULT_BATCH_SIZE = 64


def _iter_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _iter_layers(layer)


@contextlib.contextmanager
def dropout_disabled(model):
    """Switch astroNN's MC-dropout layers off inside the block (deterministic passes).

    Parameters
    ----------
    model : keras.Model
    """
    from astroNN.nn.layers import MCDropout

    layers = [lay for lay in _iter_layers(model) if isinstance(lay, MCDropout)]
    previous = [lay.disable_layer for lay in layers]
    for lay in layers:
        lay.disable_layer = True
    try:
        yield model
    finally:
        for lay, prev in zip(layers, previous):
            lay.disable_layer = prev


def _mc_step(model, mc_num):
    @tf.function(reduce_retracing=True)
    def step(x):
        n = tf.shape(x)[0]
        tiled = tf.tile(x, tf.concat([[mc_num], tf.ones(tf.rank(x) - 1, tf.int32)], 0))
        out = model(tiled, training=False)
        out = tf.reshape(out, tf.concat([[mc_num, n], tf.shape(out)[1:]], 0))
        mean, var = tf.nn.moments(out, axes=[0])
        return mean, var

    return step


def mc_predict(model, x, mc_num=100, batch_size=DEFAULT_BATCH_SIZE, progress=True, desc="MC dropout"):
    """Mean and variance of ``mc_num`` stochastic passes of ``model`` over ``x``.

    Parameters
    ----------
    model : keras.Model
        A model whose dropout is active at inference (astroNN ``MCDropout``);
        one output of shape ``(batch, k)``.
    x : ndarray, shape (N, ...)
    mc_num : int
        Number of stochastic passes per input (>= 1).
    batch_size : int
        Inputs per compiled call; each call processes ``batch_size * mc_num`` rows.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    mean, var : ndarray, shape (N, k)
        Float64; empty arrays when ``N == 0``.
    """
    if int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    k = int(np.prod(model.output_shape[1:]))
    if n == 0:
        return np.empty((0, k)), np.empty((0, k))
    step = _mc_step(model, int(mc_num))
    means, variances = [], []
    with tqdm(total=n, unit="star", desc=desc, disable=not progress, leave=False) as bar:
        bar.set_postfix({"mc_num": int(mc_num)})
        for start in range(0, n, int(batch_size)):
            mean, var = step(tf.constant(x[start : start + int(batch_size)]))
            means.append(mean.numpy().reshape(-1, k))
            variances.append(var.numpy().reshape(-1, k))
            bar.update(min(int(batch_size), n - start))
    return np.concatenate(means).astype(np.float64), np.concatenate(variances).astype(np.float64)
