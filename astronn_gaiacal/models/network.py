"""The Keras graph of the joint model: luminosity network, offset network and the parallax they predict.

:class:`JointNetwork` builds it for :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`;
a survey subclass overrides :meth:`~JointNetwork.luminosity_network` (and
:meth:`~JointNetwork.offset_network`) to change the architecture.
"""
import numpy as np

from .._compat import keras
from ..nn.layers import (
    ConstantFeature,
    FakemagLogVariance,
    FakemagToParallax,
    QuadraticOffset,
    Scale,
    SliceColumns,
)

__all__ = ["JointNetwork"]


class JointNetwork:
    """Architecture of the joint model (mixed into :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`).

    Reads the model's layer options (``num_filters``, ``filter_len``,
    ``pool_length``, ``num_hidden``, ``offset_hidden``, ``activation``, ``l2``,
    ``dropout_rate``, ``conv_layer``, ``pool_layer``, ``dropout_layer``), its
    offset options and its input normalisation.
    """

    @property
    def luminosity_hidden(self):
        """Widths of the luminosity network's dense layers (``num_hidden`` minus the offset network's)."""
        return list(self.num_hidden[: len(self.num_hidden) - len(self.offset_hidden)])

    def _initializer(self):
        return keras.initializers.RandomNormal(mean=0.0, stddev=0.05)

    def _dropout(self, x):
        return self.dropout_layer(self.dropout_rate, disable=self.disable_dropout)(x)

    def luminosity_network(self, spectra):
        """Spectrum ``(batch, n_pixels)`` -> ``(fakemag, log_variance)``, each ``(batch, 1)``.

        The paper's architecture: Conv1D(2, 8) -> Conv1D(4, 8) -> MaxPool(4) ->
        Dense(164) -> Dense(64), ReLU, MC dropout after every layer but the
        last hidden one (as in astroNN's ``ApogeeDR14GaiaDR2BCNN``; dropout there
        slows the joint fit badly), L2 regularisation; a Softplus fakemag head
        and a linear log-variance head.
        Override in a subclass for another survey.
        """
        reg = keras.regularizers.l2(self.l2)
        x = keras.layers.Reshape((self.n_pixels, 1))(spectra)
        x = self.conv_layer(
            self.num_filters[0], self.filter_len, padding="same", kernel_initializer=self._initializer(),
            kernel_regularizer=reg,
        )(x)
        x = self._dropout(keras.layers.Activation(self.activation)(x))
        x = self.conv_layer(
            self.num_filters[1], self.filter_len, padding="same", kernel_initializer=self._initializer(),
            kernel_regularizer=reg,
        )(x)
        x = self.pool_layer(pool_size=self.pool_length)(keras.layers.Activation(self.activation)(x))
        x = self._dropout(keras.layers.Flatten()(x))
        for i, units in enumerate(self.luminosity_hidden):
            x = keras.layers.Dense(units, kernel_initializer=self._initializer(), kernel_regularizer=reg)(x)
            x = keras.layers.Activation(self.activation)(x)
            if i < len(self.luminosity_hidden) - 1:  # none before the heads, as in astroNN
                x = self._dropout(x)
        return self._luminosity_heads(x)

    def _luminosity_heads(self, x):
        fakemag = keras.layers.Dense(1, activation="softplus", name="fakemag_output")(x)
        logvar = keras.layers.Dense(1, activation="linear", name="fakemag_variance_output")(x)
        return fakemag, logvar

    def offset_network(self, features):
        """Offset features ``(batch, F)`` -> zero-point ``(batch, 1)`` in label units.

        Dense(32) -> Dense(16) with tanh and MC dropout, then a linear output
        (covers any zero-point; ``offset_output_activation='tanh'`` bounds it).
        A multivariate model with ``offset_head='quadratic'`` instead has one
        quadratic per standardised feature (:class:`~astronn_gaiacal.nn.layers.QuadraticOffset`,
        the paper's eqs. 7-9 as the model itself; no dropout).
        """
        if self.offset == "multivariate" and getattr(self, "offset_head", "network") == "quadratic":
            return QuadraticOffset(curvature_l2=getattr(self, "offset_curvature_l2", 0.0), name="offset_output")(
                features)
        reg = keras.regularizers.l2(self.l2)
        x = features
        for units in self.num_hidden[len(self.luminosity_hidden) :]:
            x = keras.layers.Dense(
                units, activation="tanh", kernel_initializer=self._initializer(), kernel_regularizer=reg
            )(x)
            x = self._dropout(x)
        return keras.layers.Dense(
            1, activation=self.offset_output_activation, kernel_initializer=self._initializer(), name="offset_output"
        )(x)

    def model(self):
        """Build the luminosity and offset sub-models and the two Keras models astroNN expects.

        Returns
        -------
        joint : keras.Model
            Full layout -> ``(parallax, log-variance)`` in label units (trained).
        prediction : keras.Model
            Spectra -> ``[fakemag, log-variance]`` (used by ``predict``).
        """
        n_pix, n_feat = self.n_pixels, self.n_features
        width = n_pix + 1 + n_feat
        if self._input_shape["input"][0] != width:
            raise ValueError(
                f"input layout has {self._input_shape['input'][0]} columns; {type(self).__name__} with "
                f"offset={self.offset!r} expects {width} = {n_pix} pixels + 1 magnitude + {n_feat} features"
            )
        mean = np.asarray(self.input_mean["input"], dtype=float).ravel()
        std = np.asarray(self.input_std["input"], dtype=float).ravel()
        mag_mean = float(mean[n_pix] if mean.size > 1 else mean[0])
        mag_std = float(std[n_pix] if std.size > 1 else std[0])

        spec_in = keras.Input((n_pix,), name="spectra")
        self.luminosity_model = keras.Model(spec_in, self.luminosity_network(spec_in), name="luminosity_model")
        if self.offset != "none":
            feat_in = keras.Input((max(n_feat, 1),), name="offset_features")
            self.offset_model = keras.Model(feat_in, self.offset_network(feat_in), name="offset_model")
        else:
            self.offset_model = None

        inp = keras.Input(self._input_shape["input"], name="input")
        spectra = SliceColumns(0, n_pix, name="spectra_columns")(inp)
        mag = SliceColumns(n_pix, n_pix + 1, name="magnitude_column")(inp)
        fakemag, logvar = self.luminosity_model(spectra)
        convert = FakemagToParallax(
            fakemag_scale=self.fakemag_scale, mag_mean=mag_mean, mag_std=mag_std,
            with_offset=self.offset != "none", with_variance=True,
            variance_propagation=self.variance_propagation, name="fakemag_to_parallax",
        )
        if self.offset == "none":
            plx, plx_logvar = convert([fakemag, mag, logvar])
        else:
            if self.offset == "constant":
                features = ConstantFeature(name="constant_feature")(mag)
            else:
                features = SliceColumns(n_pix + 1, width, name="feature_columns")(inp)
            plx, plx_logvar = convert([fakemag, mag, self.offset_model(features), logvar])
        output = keras.layers.Activation("linear", name="output")(plx)
        variance_output = keras.layers.Activation("linear", name="variance_output")(plx_logvar)
        joint = keras.Model(inp, [output, variance_output], name=type(self).__name__)

        pred_in = keras.Input((n_pix,), name="input")
        f_p, s_p = self.luminosity_model(pred_in)
        predict_out = keras.layers.Concatenate(name="fakemag_and_logvar")(
            [
                Scale(self.fakemag_scale, name="fakemag_scaled")(f_p),
                FakemagLogVariance(self.fakemag_scale, self.variance_propagation, name="fakemag_logvar")(s_p),
            ]
        )
        prediction = keras.Model(pred_in, predict_out, name="luminosity_prediction")
        return joint, prediction
