r"""Fast CPU implementations of the few operations the paper's network spends its time in.

TensorFlow's ``Conv1D`` with two or four channels, ``MaxPooling1D`` and
``tf.nn.dropout`` run at a few per cent of the machine's matrix-multiply rate
on CPU (oneDNN and Eigen are tuned for wide channels).  The functions here
compute the *same* mathematical operations in a form that runs faster; they
are used by :mod:`astronn_gaiacal.nn.inference` for the MC-dropout passes.

* :func:`conv1d_direct`: a stride-1 1-D convolution as a sum of
  ``kernel_size * in_channels`` shifted, scaled slices per output channel,
  which XLA fuses into one vectorised loop.  Equal to ``tf.nn.conv1d`` to
  float32 rounding.
* :func:`block_conv1d`: the same convolution as one matrix product of pairs of
  adjacent pixel blocks with a block-Toeplitz matrix gathered from the kernel
  (:func:`block_toeplitz_kernel`); runs at matrix-multiply speed, used by
  :class:`~astronn_gaiacal.nn.layers.BlockConv1D` and the MC-dropout passes.
* :func:`max_pool1d`: non-overlapping max pooling as reshape + ``reduce_max``;
  bit-for-bit equal to ``tf.nn.max_pool1d`` (``padding='valid'``).
* :func:`bernoulli_keep_mask` / :func:`dropout`: MC dropout from 16-bit random
  integers, two per 32-bit Philox draw; the drop probability is
  ``round(rate * 2**16) / 2**16`` (0.3 -> 0.3000031), kept values are scaled
  by ``1 / (1 - rate)`` as ``tf.nn.dropout`` does.
"""
import functools

import numpy as np

from .._compat import keras, tf

_RATE_BITS = 16


def _same_padding(kernel_size, padding):
    if padding == "same":
        left = (kernel_size - 1) // 2
    elif padding == "valid":
        left = 0
    elif padding == "causal":
        left = kernel_size - 1
    else:
        raise ValueError(f"padding must be 'same', 'valid' or 'causal', got {padding!r}")
    return left


def conv1d_direct(x, kernel, bias=None, padding="same"):
    """Stride-1, dilation-1 ``Conv1D`` (channels last) as a sum of shifted, scaled slices.

    For a handful of channels this is the fastest form under XLA, which fuses
    the ``kernel_size * in_channels`` multiply-adds of each output channel
    into one vectorised loop over pixels (the input is transposed to
    channels-first for contiguous access).  No extra multiply-adds are made.

    Parameters
    ----------
    x : Tensor, shape (batch, length, in_channels)
    kernel : Tensor, shape (kernel_size, in_channels, filters)
    bias : Tensor, shape (filters,), optional
    padding : {'same', 'valid', 'causal'}

    Returns
    -------
    Tensor, shape (batch, out_length, filters)
    """
    k, c, o = (int(d) for d in kernel.shape)
    length = int(x.shape[1])
    left = _same_padding(k, padding)
    out_len = length if padding in ("same", "causal") else length - k + 1
    if out_len < 1:
        raise ValueError(f"input length {length} is shorter than the kernel ({k})")
    xt = tf.transpose(x, [0, 2, 1])
    xp = tf.pad(xt, [[0, 0], [0, 0], [left, out_len + k - 1 - length - left]])
    kernel = tf.cast(kernel, x.dtype)
    outs = []
    for oc in range(o):
        acc = None
        for tap in range(k):
            for ic in range(c):
                term = xp[:, ic, tap : tap + out_len] * kernel[tap, ic, oc]
                acc = term if acc is None else acc + term
        if bias is not None:
            acc = acc + tf.cast(bias[oc], x.dtype)
        outs.append(acc)
    return tf.stack(outs, axis=-1)


def default_block_size(kernel_size):
    """Pixels per block of :func:`block_conv1d` (fastest measured for the paper's network)."""
    return max(int(kernel_size), 8)


@functools.lru_cache(maxsize=32)
def _toeplitz_index(kernel_size, in_channels, filters, block):
    k, s, o = int(kernel_size), int(block), int(filters)
    p, c, i, f = np.meshgrid(np.arange(2 * s), np.arange(in_channels), np.arange(s), np.arange(o), indexing="ij")
    tap = p - i
    flat = (tap * in_channels + c) * o + f
    idx = np.where((tap >= 0) & (tap < k), flat, k * in_channels * o)  # last entry: zero
    return idx.reshape(2 * s * in_channels, s * o).astype(np.int32)


def block_toeplitz_kernel(kernel, block):
    """The ``(2 * block * C_in, block * filters)`` block-Toeplitz matrix of a ``(k, C_in, filters)`` kernel.

    Entry ``((p, c), (i, o))`` is ``kernel[p - i, c, o]`` when ``0 <= p - i < k``, else 0.
    """
    k, c, o = (int(d) for d in kernel.shape)
    if block < max(k - 1, 1):
        raise ValueError(f"block must be >= kernel_size - 1 = {k - 1}, got {block}")
    flat = tf.concat([tf.reshape(kernel, [-1]), tf.zeros([1], kernel.dtype)], axis=0)
    return tf.gather(flat, _toeplitz_index(k, c, o, block))


def _block_conv_impl(x, kernel, bias, left, out_len, block, filters):
    length, c = int(x.shape[1]), int(x.shape[2])
    blocks = -(-out_len // block)
    x = tf.pad(x, [[0, 0], [left, (blocks + 1) * block - length - left], [0, 0]])
    x = tf.reshape(x, [-1, blocks + 1, block * c])
    pairs = tf.concat([x[:, :-1], x[:, 1:]], axis=-1)
    y = tf.matmul(tf.reshape(pairs, [-1, 2 * block * c]), kernel)
    return tf.reshape(y, [-1, blocks * block, filters])[:, :out_len] + bias


# compiled on its own (XLA fuses the padding, pairing, cropping and bias around the product)
_block_conv = tf.function(_block_conv_impl, jit_compile=True)


def block_conv1d(x, kernel, bias=None, padding="same", block=None):
    """Stride-1 ``Conv1D`` (channels last) as one matrix product per pair of adjacent pixel blocks.

    Each output block of ``block`` pixels depends only on its own and the next
    (padded) input block, so the convolution is
    ``pairs (batch * blocks, 2 * block * C_in) @ block_toeplitz_kernel``.
    Equal to ``tf.nn.conv1d`` to float32 rounding.

    Parameters
    ----------
    x : Tensor, shape (batch, length, C_in)
    kernel : Tensor, shape (k, C_in, filters)
    bias : Tensor, shape (filters,), optional
    padding : {'same', 'valid', 'causal'}
    block : int, optional
        Pixels per block (>= k - 1); default :func:`default_block_size`.
    """
    k, _, o = (int(d) for d in kernel.shape)
    block = default_block_size(k) if block is None else int(block)
    left = _same_padding(k, padding)
    length = int(x.shape[1])
    out_len = length - k + 1 if padding == "valid" else length
    if out_len < 1:
        raise ValueError(f"input length {length} is shorter than kernel_size={k}")
    toeplitz = block_toeplitz_kernel(kernel, block)
    bias = tf.zeros([o], x.dtype) if bias is None else tf.cast(bias, x.dtype)
    return _block_conv(x, tf.cast(toeplitz, x.dtype), bias, left=left, out_len=out_len, block=block, filters=o)


def max_pool1d(x, pool_size):
    """Non-overlapping max pooling (``strides == pool_size``, ``padding='valid'``), channels last.

    Parameters
    ----------
    x : Tensor, shape (batch, length, channels)
    pool_size : int

    Returns
    -------
    Tensor, shape (batch, length // pool_size, channels)
    """
    length, ch = int(x.shape[1]), int(x.shape[2])
    n = length // pool_size
    return tf.reduce_max(tf.reshape(x[:, : n * pool_size], [-1, n, pool_size, ch]), axis=2)


def _generator(generator):
    return generator if generator is not None else tf.random.get_global_generator()


def bernoulli_keep_mask(shape, rate, generator=None):
    """Boolean mask, ``True`` with probability ``1 - rate`` (rate rounded to a multiple of 2**-16).

    Parameters
    ----------
    shape : sequence of int or 1-D int Tensor
        The last dimension must be even when static; otherwise one extra
        16-bit draw is made and discarded.
    rate : float
        Drop probability, in [0, 1).
    generator : tf.random.Generator, optional
        Defaults to TensorFlow's global generator.
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    size = tf.reduce_prod(shape)
    words = _generator(generator).uniform_full_int([(size + 1) // 2], dtype=tf.uint32)
    return keep_mask_from_words(words, shape, rate)


def keep_threshold(rate):
    """16-bit threshold of the mask law: a value is kept when its uniform 16-bit integer is >= this."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
    return int(round(rate * 2**_RATE_BITS))


def keep_mask_from_words(words, shape, rate):
    """Boolean keep-mask of ``shape`` from 32-bit random ``words`` (two 16-bit draws each, extras discarded)."""
    shape = tf.convert_to_tensor(shape, tf.int32)
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[: tf.reduce_prod(shape)]
    return tf.reshape(halves >= tf.constant(keep_threshold(rate), tf.uint16), shape)


def dropout(x, rate, generator=None):
    """MC dropout: zero each entry with probability ``rate``, scale the rest by ``1 / (1 - rate)``."""
    if rate <= 0:
        return x
    keep = bernoulli_keep_mask(tf.shape(x), rate, generator)
    return tf.where(keep, x * tf.cast(1.0 / (1.0 - rate), x.dtype), tf.zeros_like(x))


def effective_rate(rate):
    """The drop probability :func:`dropout` actually uses for a requested ``rate``."""
    return keep_threshold(rate) / 2**_RATE_BITS


#: Largest ``kernel_size * in_channels * filters`` run by :func:`conv1d_direct`.
MAX_SMALL_CONV_TERMS = 512


def conv1d_is_plain(layer):
    """Whether a ``Conv1D`` is stride 1, undilated, ungrouped, channels last, with same/valid/causal padding."""
    return (
        tuple(layer.strides) == (1,)
        and tuple(layer.dilation_rate) == (1,)
        and layer.data_format == "channels_last"
        and getattr(layer, "groups", 1) == 1
        and layer.padding in ("same", "valid", "causal")
    )


def conv1d_is_small(layer):
    """Whether a Keras ``Conv1D`` is plain (:func:`conv1d_is_plain`), built and small enough to gain."""
    if not isinstance(layer, keras.layers.Conv1D) or type(layer).__name__ in ("Conv1DTranspose", "SeparableConv1D"):
        return False
    return (
        conv1d_is_plain(layer)
        and layer.built
        and int(np.prod(layer.kernel.shape)) <= MAX_SMALL_CONV_TERMS
    )


def maxpool1d_is_reshapable(layer):
    """Whether a Keras ``MaxPooling1D`` is non-overlapping, valid-padded and channels last."""
    return (
        isinstance(layer, keras.layers.MaxPooling1D)
        and layer.padding == "valid"
        and tuple(layer.strides) == tuple(layer.pool_size)
        and layer.data_format == "channels_last"
    )


# XLA-compiled versions, each its own cluster: XLA fuses the element-wise work inside one
# operation, and the cluster boundary materialises the result once (see also _block_conv).
xla_max_pool1d = tf.function(max_pool1d, jit_compile=True)
xla_dropout = tf.function(dropout, jit_compile=True)

