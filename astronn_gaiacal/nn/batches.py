"""The training input pipeline: astroNN's batches as a ``tf.data`` pipeline that gathers in-graph.

astroNN feeds Keras' ``fit`` a Python ``Sequence``: Keras runs it through an
enqueuer thread and ``Dataset.from_generator``, so every batch is gathered in
NumPy, converted under the GIL and copied into a tensor, while the training
step's own Python operations (the fused kernels) wait for the same GIL.
:func:`training_batches` gives ``fit`` the same batches (``steps`` batches of
``batch_size`` rows per epoch, a new random order each epoch for training, in
order for validation) as a ``tf.data`` pipeline whose gathers run in
TensorFlow on arrays shared with NumPy, without copies.
"""
import numpy as np

from .._compat import tf
from .fused import TENSOR_ALIGNMENT, aligned_empty

__all__ = ["shared_tensor", "training_batches"]


def shared_tensor(array):
    """A float32 tensor on the memory of a NumPy array (DLPack), and that array.

    TensorFlow needs its buffers on a ``astronn_gaiacal.nn.fused.TENSOR_ALIGNMENT``-byte
    boundary; an array that is not (or is not float32 C-contiguous) is copied once into one that is.

    Returns
    -------
    array : ndarray
        The float32 array the tensor reads (``array`` itself when it qualified).
    tensor : tf.Tensor
    """
    arr = np.asarray(array)
    if arr.dtype != np.float32 or not arr.flags.c_contiguous or arr.ctypes.data % TENSOR_ALIGNMENT:
        aligned = aligned_empty(arr.shape, np.float32)
        aligned[...] = arr
        arr = aligned
    if arr.size == 0:
        return arr, tf.zeros(arr.shape, tf.float32)
    return arr, tf.experimental.dlpack.from_dlpack(arr.__dlpack__())


def training_batches(inputs, labels, sample_weight, batch_size, steps, shuffle, seed=None, noise=None):
    """astroNN's training or validation batches as a ``tf.data.Dataset`` for Keras' ``fit``.

    Parameters
    ----------
    inputs : dict of ndarray
        astroNN's normalised inputs: ``'input'`` ``(N, L)`` or ``(N, L, 1)`` and ``'labels_err'``;
        ``'input_err'`` is left out (the joint models do not read it).
    labels : dict of ndarray
        One array per output, ``(N, ...)``.
    sample_weight : ndarray or None
    batch_size, steps : int
        Rows per batch and batches per epoch (``steps * batch_size <= N``; astroNN's
        ``N // batch_size``).
    shuffle : bool
        A new random order every epoch (training), else the rows in order (validation).
    seed : int, optional
        Seed of the orders; default one draw from NumPy's global generator, so that
        ``np.random.seed`` reproduces a training as it does astroNN's.
    noise : astronn_gaiacal.nn.noise.TrainingNoise, optional
        Degrade each batch's spectra (:mod:`astronn_gaiacal.nn.noise`), with new draws every
        epoch from the same seed.

    Returns
    -------
    dataset : tf.data.Dataset
        ``(x, y)`` or ``(x, y, sample_weight)`` batches, ``x = {'input': (B, L, 1), 'labels_err': (B,)}``.
    input : ndarray
        The ``(N, L)`` or ``(N, L, 1)`` float32 array the batches read (share it instead of
        keeping ``inputs['input']`` too).
    """
    batch_size, steps = int(batch_size), int(steps)
    x_np, x = shared_tensor(inputs["input"])
    n = int(x.shape[0])
    if batch_size < 1 or steps < 1 or steps * batch_size > n:
        raise ValueError(f"{steps} batches of {batch_size} rows need at least {steps * batch_size} rows, got {n}")
    if x.shape.rank == 2:
        x = tf.reshape(x, (n, -1, 1))
    columns = {
        "labels_err": tf.constant(np.asarray(inputs["labels_err"], dtype=np.float32).reshape(n, -1)[:, 0]),
    }
    outputs = {name: tf.constant(np.asarray(value, dtype=np.float32)) for name, value in labels.items()}
    weight = None if sample_weight is None else tf.constant(np.asarray(sample_weight, dtype=np.float32))
    order = tf.data.Dataset.range(n)
    if shuffle or noise is not None:
        seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    order = order.batch(batch_size, drop_remainder=True).take(steps)
    if noise is not None:  # one key per batch, new ones every epoch
        keys = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)
        order = tf.data.Dataset.zip((order, keys))

    @tf.autograph.experimental.do_not_convert
    def gather(idx, key=None):
        batch = tf.gather(x, idx)
        if noise is not None:
            batch = noise(batch, idx, key)
        batch_x = {"input": batch, **{k: tf.gather(v, idx) for k, v in columns.items()}}
        batch_y = {k: tf.gather(v, idx) for k, v in outputs.items()}
        return (batch_x, batch_y) if weight is None else (batch_x, batch_y, tf.gather(weight, idx))

    return order.map(gather).prefetch(2), x_np
