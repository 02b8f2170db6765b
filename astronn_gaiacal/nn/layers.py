"""Keras layers of the joint model.  Each does one thing and serialises."""

from .._compat import keras, tf
from ..constants import LN10
from .fast import (block_conv1d, block_toeplitz_kernel, conv1d_is_plain, default_block_size, effective_rate,
                   keep_mask_from_words)
from astroNN.nn.layers import MCDropout  # noqa: E402,I001  (after _compat has set up Keras 2)

VARIANCE_PROPAGATION_MODES = ("exact", "astronn")

# The layers' ``call`` methods have no Python control flow on tensors, so AutoGraph has nothing
# to convert; skipping it also avoids a stale converted-function cache entry that was seen to
# hand ConstantFeature.call another function's conversion in a long demo run.
def _no_autograph(fn):
    fn.autograph_info__ = {}  # AutoGraph leaves functions with this attribute as they are
    return fn


class FakemagToParallax(keras.layers.Layer):
    r"""Convert a pseudo-luminosity and an apparent magnitude to a parallax.

    .. math::

        L = k\,f, \qquad m = \mu_m + \sigma_m m_{\rm norm}, \qquad
        \varpi = L\,10^{-m/5} + \varpi_0

    where :math:`f` is the luminosity network's output, :math:`k` the fakemag
    scale factor and :math:`\varpi_0` the optional zero-point offset.  With
    ``with_variance=True`` the layer also takes the log-variance ``s`` of
    :math:`f` and returns the log-variance of :math:`\varpi`:

    * ``variance_propagation="exact"`` (default):
      :math:`\sigma_\varpi^2 = \sigma_L^2\,10^{-2m/5}`, i.e.
      :math:`s_\varpi = s + 2\ln k - \tfrac{2\ln 10}{5} m`.
    * ``variance_propagation="astronn"``: astroNN 1.1.0's
      ``ApogeeDR14GaiaDR2BCNN`` rule :math:`s_\varpi = \ln|\varpi_L e^{s} / f|`
      with :math:`\varpi_L = L\,10^{-m/5}`.  It scales a variance linearly
      (dimensionally inconsistent) and is kept only to reproduce that model.

    Parameters
    ----------
    fakemag_scale : float
        :math:`k`, the factor from the network output to (normalised) fakemag.
    mag_mean, mag_std : float
        De-normalisation of the magnitude input.
    with_offset : bool
        Whether the inputs contain an offset tensor.
    with_variance : bool
        Whether the inputs contain the fakemag log-variance.
    variance_propagation : {'exact', 'astronn'}

    Notes
    -----
    Inputs are a list ``[fakemag, mag]`` followed by ``offset`` if
    ``with_offset`` and ``fakemag_logvar`` if ``with_variance``; each of shape
    ``(batch, 1)``.  Output is ``parallax`` or ``[parallax, parallax_logvar]``.
    """

    def __init__(
        self,
        fakemag_scale=1.0,
        mag_mean=0.0,
        mag_std=1.0,
        with_offset=False,
        with_variance=False,
        variance_propagation="exact",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variance_propagation not in VARIANCE_PROPAGATION_MODES:
            raise ValueError(
                f"variance_propagation must be one of {VARIANCE_PROPAGATION_MODES}, "
                f"got {variance_propagation!r}"
            )
        if not float(fakemag_scale) > 0:
            raise ValueError(f"fakemag_scale must be positive, got {fakemag_scale!r}")
        if not float(mag_std) > 0:
            raise ValueError(f"mag_std must be positive, got {mag_std!r}")
        self.fakemag_scale = float(fakemag_scale)
        self.mag_mean = float(mag_mean)
        self.mag_std = float(mag_std)
        self.with_offset = bool(with_offset)
        self.with_variance = bool(with_variance)
        self.variance_propagation = variance_propagation

    def _n_inputs(self):
        return 2 + self.with_offset + self.with_variance

    @_no_autograph
    def call(self, inputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(inputs) != self._n_inputs():
            raise ValueError(
                f"FakemagToParallax(with_offset={self.with_offset}, with_variance="
                f"{self.with_variance}) takes {self._n_inputs()} inputs, got {len(inputs)}"
            )
        fakemag, mag = inputs[0], inputs[1]
        mag = mag * self.mag_std + self.mag_mean
        luminosity = fakemag * self.fakemag_scale
        parallax_no_offset = luminosity * tf.pow(tf.constant(10.0, dtype=mag.dtype), -0.2 * mag)
        parallax = parallax_no_offset + inputs[2] if self.with_offset else parallax_no_offset
        if not self.with_variance:
            return parallax
        logvar = inputs[-1]
        if self.variance_propagation == "exact":
            parallax_logvar = logvar + 2.0 * tf.math.log(self.fakemag_scale) - (0.4 * LN10) * mag
        else:
            parallax_logvar = tf.math.log(tf.abs(parallax_no_offset * tf.exp(logvar) / fakemag))
        return [parallax, parallax_logvar]

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return [shape, shape] if self.with_variance else shape

    def get_config(self):
        config = super().get_config()
        config.update(
            fakemag_scale=self.fakemag_scale,
            mag_mean=self.mag_mean,
            mag_std=self.mag_std,
            with_offset=self.with_offset,
            with_variance=self.with_variance,
            variance_propagation=self.variance_propagation,
        )
        return config


class FakemagLogVariance(keras.layers.Layer):
    r"""Log-variance of the scaled fakemag :math:`L = k f` from that of :math:`f`.

    ``"exact"``: :math:`s_L = s + 2\ln k`.  ``"astronn"``: astroNN 1.1.0's
    :math:`s + \ln k`, kept to reproduce ``ApogeeDR14GaiaDR2BCNN`` predictions.
    """

    def __init__(self, fakemag_scale=1.0, variance_propagation="exact", **kwargs):
        super().__init__(**kwargs)
        if variance_propagation not in VARIANCE_PROPAGATION_MODES:
            raise ValueError(
                f"variance_propagation must be one of {VARIANCE_PROPAGATION_MODES}, "
                f"got {variance_propagation!r}"
            )
        self.fakemag_scale = float(fakemag_scale)
        self.variance_propagation = variance_propagation

    @_no_autograph
    def call(self, logvar):
        power = 2.0 if self.variance_propagation == "exact" else 1.0
        return logvar + power * tf.math.log(self.fakemag_scale)

    def get_config(self):
        config = super().get_config()
        config.update(fakemag_scale=self.fakemag_scale, variance_propagation=self.variance_propagation)
        return config


class Scale(keras.layers.Layer):
    """Multiply by a fixed factor (e.g. the fakemag scale)."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    @_no_autograph
    def call(self, x):
        return x * self.factor

    def get_config(self):
        config = super().get_config()
        config.update(factor=self.factor)
        return config


class SliceColumns(keras.layers.Layer):
    """Columns ``start:stop`` of a ``(batch, n)`` or ``(batch, n, 1)`` input, as ``(batch, k)``."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = int(stop)

    @_no_autograph
    def call(self, x):
        if x.shape.rank == 3:
            x = x[..., 0]
        return x[:, self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start)

    def get_config(self):
        config = super().get_config()
        config.update(start=self.start, stop=self.stop)
        return config


class ConstantFeature(keras.layers.Layer):
    """A ``(batch, 1)`` tensor of ones: the constant offset model's only input.

    It is generated inside the graph, so training and inference see the same
    input by construction (the paper's notebook trained on mean-subtracted
    ones, i.e. zeros, and evaluated on raw ones).
    """

    @_no_autograph
    def call(self, x):
        return tf.ones_like(x[:, :1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


class QuadraticOffset(keras.layers.Layer):
    r"""Zero-point as a quadratic in each standardised feature: :math:`c + \sum_j (b_j z_j + a_j z_j^2)`.

    The additive form of the paper's eqs. 7-9, as an offset head with
    :math:`1 + 2F` weights (``c``, ``b``, ``a``; all start at zero) instead of
    a dense network: the low-dimensional offset model of
    ``offset_head='quadratic'`` (docs/calibration.rst).  Input ``(batch, F)``
    standardised features, output ``(batch, 1)`` in label units.

    Parameters
    ----------
    curvature : bool
        Include the quadratic terms ``a_j`` (default); ``False`` leaves a linear model.
    curvature_l2 : float
        Weight of an L2 penalty on the ``a_j`` alone (0: none).

    Examples
    --------
    >>> import numpy as np
    >>> from astronn_gaiacal.nn.layers import QuadraticOffset
    >>> head = QuadraticOffset()
    >>> _ = head(np.zeros((1, 2), "float32"))
    >>> head.set_weights([np.array([1.0]), np.array([2.0, 0.0]), np.array([0.0, 3.0])])
    >>> head(np.array([[1.0, 2.0]], "float32")).numpy().tolist()   # 1 + 2*1 + 3*2**2
    [[15.0]]
    """

    def __init__(self, curvature=True, curvature_l2=0.0, **kwargs):
        super().__init__(**kwargs)
        if not float(curvature_l2) >= 0:
            raise ValueError(f"curvature_l2 must be >= 0, got {curvature_l2!r}")
        self.curvature = bool(curvature)
        self.curvature_l2 = float(curvature_l2)

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.intercept = self.add_weight(name="intercept", shape=(1,), initializer="zeros")
        self.linear = self.add_weight(name="linear", shape=(n,), initializer="zeros")
        reg = keras.regularizers.l2(self.curvature_l2) if self.curvature_l2 else None
        self.quadratic = self.add_weight(name="quadratic", shape=(n,), initializer="zeros", regularizer=reg,
                                         trainable=self.curvature)
        super().build(input_shape)

    @_no_autograph
    def call(self, z):
        out = self.intercept + tf.reduce_sum(z * self.linear + tf.square(z) * self.quadratic, axis=-1)
        return out[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(curvature=self.curvature, curvature_l2=self.curvature_l2)
        return config


class BlockConv1D(keras.layers.Conv1D):
    r"""``Conv1D`` computed as one matrix product per block of pixels (same weights, same result).

    A stride-1 convolution with a few channels is memory-bound in TensorFlow's
    CPU kernels.  Here the (padded) input is cut into blocks of ``block_size``
    pixels; each output block depends only on its own and the next input
    block, so the whole convolution is one matrix product of the pairs of
    adjacent blocks, ``(batch * blocks, 2 * block_size * C_in)``, with a
    block-Toeplitz matrix ``(2 * block_size * C_in, block_size * C_out)``
    gathered from the ordinary ``(kernel_size, C_in, filters)`` kernel:

    .. math::

        y_{b s + i, o} = \sum_{p=0}^{2s-1} \sum_c x_{b s + p, c}\, W_{(p, c), (i, o)},
        \qquad W_{(p, c), (i, o)} = w_{p - i, c, o} \ \text{if}\ 0 \le p - i < k,\ \text{else}\ 0.

    The layer's variables, configuration and saved weights are exactly
    ``Conv1D``'s, so weights move freely between the two.  Configurations it
    does not cover (strides, dilation, groups, channels-first) fall back to
    ``Conv1D.call``.

    Parameters
    ----------
    block_size : int, optional
        Pixels per block, at least ``kernel_size - 1``; defaults to
        ``max(kernel_size, 8)`` (fastest measured for the paper's network).
    **kwargs
        ``Conv1D``'s arguments.

    Examples
    --------
    >>> import numpy as np
    >>> from astronn_gaiacal._compat import keras
    >>> from astronn_gaiacal.nn.layers import BlockConv1D
    >>> x = np.random.default_rng(0).normal(size=(2, 50, 1)).astype("float32")
    >>> fast, ref = BlockConv1D(2, 8, padding="same"), keras.layers.Conv1D(2, 8, padding="same")
    >>> _ = fast(x), ref(x)
    >>> ref.set_weights(fast.get_weights())
    >>> bool(np.allclose(fast(x), ref(x), atol=1e-6))
    True
    """

    def __init__(self, filters, kernel_size, block_size=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        k = int(self.kernel_size[0])
        self.block_size = int(block_size) if block_size is not None else default_block_size(k)
        if self.block_size < max(k - 1, 1):
            raise ValueError(f"block_size must be >= kernel_size - 1 = {k - 1}, got {self.block_size}")

    def toeplitz_kernel(self):
        """The ``(2 * block_size * C_in, block_size * filters)`` block-Toeplitz matrix of ``kernel``."""
        return block_toeplitz_kernel(self.kernel, self.block_size)

    @_no_autograph
    def call(self, inputs):
        if not conv1d_is_plain(self):
            return super().call(inputs)
        y = block_conv1d(inputs, self.kernel, self.bias if self.use_bias else None, padding=self.padding,
                         block=self.block_size)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(block_size=self.block_size)
        return config


class FastMCDropout(MCDropout):
    """astroNN's ``MCDropout`` (always on) with masks from 16-bit random draws.

    Each 32-bit draw of a counter-based Philox generator gives two masks; a
    value is dropped with probability ``round(rate * 2**16) / 2**16``
    (0.3 -> 0.3000031) and the kept ones are scaled by ``1 / (1 - rate)``,
    as ``tf.nn.dropout`` does.  The generator's key comes from TensorFlow's
    global seed, so ``keras.utils.set_random_seed`` makes it reproducible.
    About twice as fast as ``tf.nn.dropout`` on CPU.  ``noise_shape`` is not
    supported (use ``MCDropout``).
    """

    def __init__(self, rate, disable=False, noise_shape=None, name=None, **kwargs):
        if noise_shape is not None:
            raise ValueError("FastMCDropout does not take noise_shape; use astroNN's MCDropout")
        if not 0 <= float(rate) < 1:
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        super().__init__(rate, disable=disable, noise_shape=None, name=name, **kwargs)

    @property
    def effective_rate(self):
        """The drop probability actually used."""
        return effective_rate(self.rate)

    @_no_autograph
    def call(self, inputs, training=None):
        if self.disable_layer is True or self.rate == 0:
            return inputs
        size = tf.size(inputs)
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        words = tf.random.stateless_uniform(
            [(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox"
        )
        keep = keep_mask_from_words(words, tf.shape(inputs), self.rate)
        return inputs * (tf.cast(keep, inputs.dtype) * tf.cast(1.0 / (1.0 - self.rate), inputs.dtype))


def _pool_max_impl(x, pool):
    n = int(x.shape[1]) // pool
    return tf.reduce_max(tf.reshape(x[:, : n * pool], [-1, n, pool, int(x.shape[2])]), axis=2)


_pool_max = tf.function(_pool_max_impl, jit_compile=True)


class FastMaxPooling1D(keras.layers.MaxPooling1D):
    """``MaxPooling1D`` as reshape + max for non-overlapping, valid, channels-last pooling.

    Same output, bit for bit; forward and backward about 3x faster on CPU than
    TensorFlow's pooling kernel.  The gradient is shared between tied maxima
    (``MaxPooling1D`` gives it to the first), which differs only for exactly
    equal inputs.  Other configurations run ``MaxPooling1D.call``.
    """

    @_no_autograph
    def call(self, inputs):
        if (
            self.padding == "valid"
            and tuple(self.strides) == tuple(self.pool_size)
            and self.data_format == "channels_last"
        ):
            return _pool_max(inputs, int(self.pool_size[0]))
        return super().call(inputs)
