"""Keras layers of the joint model.  Each does one thing and serialises."""
from .._compat import keras, tf
from ..constants import LN10

VARIANCE_PROPAGATION_MODES = ("exact", "astronn")


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

    def call(self, x):
        return tf.ones_like(x[:, :1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)
