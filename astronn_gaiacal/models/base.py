r"""Survey-agnostic joint model: spectro-luminosity network + offset calibration network.

:class:`GaiaCalBCNNBase` subclasses astroNN's ``BayesianCNNBase``, so astroNN's
``fit`` loop, normalisers, callbacks, ``save`` format and ``load_folder`` are
reused.  The Keras graph is

.. code-block:: text

    input = [spectrum | extinction-corrected magnitude | offset features]
        spectrum  -> luminosity_model -> (f, s)            Softplus f > 0, log-variance s
        features  -> offset_model     -> offset             (constant: a ones input made in-graph)
        FakemagToParallax(f, m, offset, s) -> (parallax, log-variance)   trained on Gaia parallaxes

All parallaxes inside the graph are in units of ``labels_std`` (mas); the
fakemag returned by :meth:`~GaiaCalBCNNBase.predict` is
:math:`L = k f \times` ``labels_std``.  The sign convention is
:math:`\varpi_{\rm Gaia} = \varpi_{\rm true} + \varpi_0`.
"""
import json
import os
import warnings

import numpy as np
from astropy import units as u
from astroNN.models.base_bayesian_cnn import BayesianCNNBase
from astroNN.nn.layers import MCDropout
from astroNN.nn.losses import mean_absolute_error, mean_error
from astroNN.nn.utilities import Normalizer

from .. import conversions
from .._compat import keras, tf
from ..io.atomic import atomic_directory
from .._versions import __version__
from ..constants import MAGIC_NUMBER, PAPER_FAKEMAG_SCALE, PAPER_OFFSET_FEATURES
from ..nn.inference import mc_predict, mc_predict_shared_masks
from ..nn.fused_training import call_with_fused_stacks, has_conv_stacks
from ..nn.layers import BlockConv1D, ConstantFeature, FastMaxPooling1D, FastMCDropout, FakemagLogVariance, FakemagToParallax, Scale, SliceColumns
from ..nn.batches import training_batches
from ..nn.callbacks import WeightAveraging
from ..nn.losses import DEFAULT_LOSS, LOSS_CLASSES, loss_from_name

OFFSET_VARIANTS = ("none", "constant", "multivariate")
PLUGIN_KEY = "astronn_gaiacal"
ZEROPOINT_CONVENTION = "parallax_gaia = parallax_true + zeropoint"


class NotTrainedError(AttributeError):
    """The model has no trained network yet (call ``fit`` or ``load_folder``)."""


#: Rows per block where a whole-array temporary would be as large as the spectra.
_BLOCK_ROWS = 4096


def _as_2d_float(x, name, dtype=np.float64):
    """``x`` as a 2-d float array; ``dtype=None`` keeps float32/float64 input as it is (no copy)."""
    if isinstance(x, u.Quantity):
        raise TypeError(f"{name} must be a plain array here, not a Quantity")
    if dtype is None:
        dtype = getattr(x, "dtype", None)
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_stars, n_columns), got {np.shape(x)}")
    return arr


def _as_1d_float(x, name, n, unit=None):
    if isinstance(x, u.Quantity):
        if unit is None:
            raise TypeError(f"{name} must not be a Quantity")
        try:
            x = x.to_value(unit)
        except u.UnitConversionError:
            raise u.UnitTypeError(f"{name} must be in units of {unit}, got '{x.unit}'") from None
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the spectra, got {np.shape(x)}")
    return arr


def _column_moments(a, rows=4096):
    """Float64 mean and standard deviation of each column of ``a``, over blocks of rows (no full-size temporaries)."""
    n = a.shape[0]
    mean = np.zeros(a.shape[1])
    for start in range(0, n, rows):
        mean += np.sum(a[start:start + rows], axis=0, dtype=np.float64)
    mean /= max(n, 1)
    ss = np.zeros(a.shape[1])
    for start in range(0, n, rows):
        ss += np.sum(np.square(a[start:start + rows] - mean), axis=0)
    return mean, np.sqrt(ss / max(n, 1))


def _missing(a):
    return (a == MAGIC_NUMBER) | ~np.isfinite(a)


class GaiaCalBCNNBase(BayesianCNNBase):
    """Base class of the joint distance + Gaia zero-point models.

    Subclasses describe a survey with class attributes and may override
    :meth:`luminosity_network` (and :meth:`offset_network`).

    Parameters
    ----------
    offset : {'none', 'constant', 'multivariate'}
        Zero-point model: fixed at 0, one constant, or a function of
        ``offset_features``.
    offset_features : sequence of str, optional
        Names of the offset-model inputs (multivariate only); defaults to
        :attr:`default_offset_features`.
    loss : str
        Registered likelihood name: ``'gaia_gaussian_nll'`` (paper, default),
        ``'gaia_student_t_nll'`` or ``'gaussian_nll'``.
    loss_config : dict, optional
        Extra loss arguments, e.g. ``{'nu': 4.0}`` for the Student-t.
    variance_propagation : {'exact', 'astronn'}
        See :class:`~astronn_gaiacal.nn.FakemagToParallax`.
    offset_output_activation : {'linear', 'tanh'}
        Activation of the offset output; ``'tanh'`` bounds it to
        +-``labels_std`` as astroNN 1.1.0 does.
    lr : float
        Adam learning rate.
    dropout_rate : float
        MC-dropout rate of every layer.

    Attributes
    ----------
    spectrum_length : int or None
        Pixels (inputs) per star; ``None`` means "set by the first fit".
    pixel_mask : ndarray of bool or None
        Pixels the luminosity network sees (applied before normalisation).
    band : str
        Photometric band of the magnitude.
    fakemag_scale : float
        Fixed factor between the Softplus output and normalised fakemag.
    default_offset : str
    default_offset_features : tuple of str
    gaia_release : str
    standardize_spectra : bool
        Divide inputs by their standard deviation (dense models) or only
        centre them (spectra, as the paper).
    jit_compile : bool
        Compile the whole training step with XLA (off by default: on CPU the
        per-layer XLA kernels below are faster, see :doc:`/performance`).
    conv_layer, pool_layer, dropout_layer : class
        Layers :meth:`luminosity_network` builds: :class:`~astronn_gaiacal.nn.layers.BlockConv1D`,
        :class:`~astronn_gaiacal.nn.layers.FastMaxPooling1D` and
        :class:`~astronn_gaiacal.nn.layers.FastMCDropout` (the same operations
        as ``Conv1D``, ``MaxPooling1D`` and astroNN's ``MCDropout``, and the
        same weights, computed faster on CPU).  Set them to the Keras/astroNN
        classes to build the original layers.
    inference_bf16 : bool
        Run the MC-dropout matrix products of :meth:`predict` in bfloat16
        (off by default; slower on CPUs without native bf16 and accurate to
        about 1e-3 relative, see :doc:`/performance`).
    train_fused : bool
        Run the Conv1D -> ReLU -> dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout
        stack of each training step (forward and backward) as one Numba kernel each
        (:mod:`astronn_gaiacal.nn.fused_training`; default, unless ``jit_compile``).  ``False``
        runs those layers as TensorFlow operations.
    inference_fused : bool
        Run the dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout
        stretch of each MC-dropout pass of :meth:`predict` as one Numba kernel
        (:mod:`astronn_gaiacal.nn.fused`; default).  ``False`` runs those layers
        as separate TensorFlow operations.
    """

    spectrum_length = None
    pixel_mask = None
    band = "Ks"
    fakemag_scale = PAPER_FAKEMAG_SCALE
    default_offset = "constant"
    default_offset_features = PAPER_OFFSET_FEATURES
    gaia_release = "dr2"
    standardize_spectra = False
    offset_hidden = (32, 16)
    inference_bf16 = False
    inference_fused = True
    train_fused = True
    jit_compile = False
    conv_layer = BlockConv1D
    dropout_layer = FastMCDropout
    pool_layer = FastMaxPooling1D

    def __init__(
        self,
        offset=None,
        offset_features=None,
        loss=DEFAULT_LOSS,
        loss_config=None,
        variance_propagation="exact",
        offset_output_activation="linear",
        lr=1e-3,
        dropout_rate=0.3,
    ):
        super().__init__()
        self.name = "Joint spectro-luminosity and Gaia zero-point Bayesian neural network"
        self._implementation_version = __version__
        self.offset = offset or self.default_offset
        self.offset_features = list(offset_features or self.default_offset_features)
        self.loss_name = loss
        self.loss_config = dict(loss_config or {})
        self.variance_propagation = variance_propagation
        self.offset_output_activation = offset_output_activation
        self._validate_options()
        self.task = "regression"
        self.targetname = [f"{self.band}-band fakemag"]
        self.activation = "relu"
        self.num_filters = [2, 4]
        self.filter_len = 8
        self.pool_length = 4
        self.num_hidden = [164, 64, *self.offset_hidden]
        self.lr = lr
        self.max_epochs = 40
        self.batch_size = 64
        self.l2 = 5e-9
        self.dropout_rate = dropout_rate
        self.reduce_lr_epsilon = 0.00005
        self.reduce_lr_min = 1e-8
        self.reduce_lr_patience = 2
        # astroNN halves the learning rate after `reduce_lr_patience` epochs without progress; on
        # small training sets an epoch is only a few steps, so wait at least this many steps
        self.reduce_lr_min_patience_steps = 500
        # fraction of the last epochs whose weights are averaged at the end of fit (0: off)
        self.weight_averaging = 0.0
        self.input_norm_mode = 2
        self.labels_norm_mode = 4
        self.val_size = 0.1
        self.feature_ranges = None
        # provenance of a luminosity network taken from another model (fit(luminosity_from=...))
        self.luminosity_from = None
        self.luminosity_frozen = False
        self._luminosity_start = None
        self.luminosity_model = None
        self.offset_model = None
        self._plugin_config_restored = False
        self._fused_stacks = False

    # ------------------------------------------------------------------ options
    def _validate_options(self):
        if self.offset not in OFFSET_VARIANTS:
            raise ValueError(f"offset must be one of {OFFSET_VARIANTS}, got {self.offset!r}")
        if self.loss_name not in LOSS_CLASSES:
            raise ValueError(f"loss must be one of {sorted(LOSS_CLASSES)}, got {self.loss_name!r}")
        loss_from_name(self.loss_name, **self.loss_config)  # validates loss_config
        if self.variance_propagation not in ("exact", "astronn"):
            raise ValueError(f"variance_propagation must be 'exact' or 'astronn', got {self.variance_propagation!r}")
        if self.offset_output_activation not in ("linear", "tanh"):
            raise ValueError(
                f"offset_output_activation must be 'linear' or 'tanh', got {self.offset_output_activation!r}"
            )
        if self.offset == "multivariate":
            if not self.offset_features or len(set(self.offset_features)) != len(self.offset_features):
                raise ValueError(f"offset_features must be distinct non-empty names, got {self.offset_features!r}")

    @property
    def luminosity_hidden(self):
        """Widths of the luminosity network's dense layers (``num_hidden`` minus the offset network's)."""
        return list(self.num_hidden[: len(self.num_hidden) - len(self.offset_hidden)])

    @property
    def n_features(self):
        """Number of offset-feature columns in the input layout."""
        return len(self.offset_features) if self.offset == "multivariate" else 0

    @property
    def n_pixels(self):
        """Number of spectrum columns the network sees (after :attr:`pixel_mask`)."""
        if self.pixel_mask is not None:
            return int(np.count_nonzero(self.pixel_mask))
        if self.spectrum_length is None:
            raise NotTrainedError(f"{type(self).__name__}.spectrum_length is set by the first fit")
        return int(self.spectrum_length)

    def _plugin_config(self):
        return {
            "version": __version__,
            "offset": self.offset,
            "offset_features": self.offset_features if self.offset == "multivariate" else [],
            "feature_ranges": self.feature_ranges,
            "spectrum_length": int(self.spectrum_length),
            "band": self.band,
            "gaia_release": self.gaia_release,
            "fakemag_scale": self.fakemag_scale,
            "loss": self.loss_name,
            "loss_config": self.loss_config,
            "variance_propagation": self.variance_propagation,
            "offset_output_activation": self.offset_output_activation,
            "weight_averaging": float(self.weight_averaging),
            "luminosity_from": self.luminosity_from,
            "luminosity_frozen": bool(self.luminosity_frozen),
            "parallax_unit": "mas",
            "zeropoint_convention": ZEROPOINT_CONVENTION,
        }

    def _restore_plugin_config(self):
        """Read the plugin's options from a folder being loaded by ``load_folder``."""
        if self._plugin_config_restored or not self.fullfilepath:
            return
        path = os.path.join(self.fullfilepath, "astroNN_model_parameter.json")
        if not os.path.isfile(path):
            return
        with open(path) as f:
            block = json.load(f).get(PLUGIN_KEY)
        if block is None:
            raise ValueError(f"{path} has no '{PLUGIN_KEY}' section: not saved by astronn_gaiacal")
        self.offset = block["offset"]
        self.offset_features = list(block["offset_features"]) or list(self.default_offset_features)
        self.feature_ranges = block.get("feature_ranges")
        self.spectrum_length = int(block["spectrum_length"])
        self.fakemag_scale = float(block["fakemag_scale"])
        self.loss_name = block["loss"]
        self.loss_config = dict(block.get("loss_config") or {})
        self.variance_propagation = block["variance_propagation"]
        self.offset_output_activation = block.get("offset_output_activation", "linear")
        self.weight_averaging = float(block.get("weight_averaging", 0.0))
        self.luminosity_from = block.get("luminosity_from")
        self.luminosity_frozen = bool(block.get("luminosity_frozen", False))
        self._validate_options()
        self._plugin_config_restored = True

    # ------------------------------------------------------------------ network
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
        """
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

    def _loss_function(self):
        loss_obj = loss_from_name(self.loss_name, **self.loss_config)

        def loss_fn(y_true, y_pred):
            return loss_obj.call(y_true, y_pred)

        loss_fn.__name__ = self.loss_name  # saved by name; astroNN's load_folder looks it up
        return loss_fn

    def compile(
        self, optimizer=None, loss=None, metrics=None, weighted_metrics=None, loss_weights=None, sample_weight_mode=None
    ):
        """Build and compile the Keras model (called by astroNN's ``fit`` and ``load_folder``)."""
        self._restore_plugin_config()
        if optimizer is not None:
            self.optimizer = optimizer
        elif self.optimizer is None or self.optimizer == "adam":
            self.optimizer = keras.optimizers.Adam(
                learning_rate=self.lr, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.optimizer_epsilon
            )
            # tf-keras compiles the Adam update with XLA only on GPUs; on CPU too the fused update is
            # about 3x faster than its separate element-wise operations (same arithmetic)
            self.optimizer.jit_compile = True
        self._last_layer_activation = "softplus"
        self.keras_model, self.keras_model_predict = self.model()
        if self._luminosity_start is not None:  # fit(luminosity_from=...): start from those weights
            self.luminosity_model.set_weights(self._luminosity_start)
            self._luminosity_start = None
        # frozen also when reloaded, so the saved optimizer state (offset network only) fits
        self.luminosity_model.trainable = not self.luminosity_frozen
        self.keras_model.compile(
            optimizer=self.optimizer,
            loss=self._loss_function(),
            metrics={"output": [mean_absolute_error, mean_error]},
            jit_compile=bool(self.jit_compile),
        )
        self._fused_stacks = bool(self.train_fused and not self.jit_compile and has_conv_stacks(self.keras_model))
        self.keras_model.train_step = self.custom_train_step
        self.keras_model.test_step = self.custom_test_step
        return None

    def recompile(self, weighted_metrics=None, loss_weights=None, sample_weight_mode=None):
        self.keras_model.compile(
            optimizer=self.optimizer, loss=self._loss_function(), metrics={"output": [mean_absolute_error, mean_error]},
            jit_compile=bool(self.jit_compile),
        )
        self.keras_model.train_step = self.custom_train_step
        self.keras_model.test_step = self.custom_test_step

    def _step_loss(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._fused_stacks:
            plx, plx_logvar = call_with_fused_stacks(self.keras_model, x["input"])
        else:
            plx, plx_logvar = self.keras_model(x["input"], training=training)
        sigma = tf.reshape(tf.cast(x["labels_err"], plx.dtype), tf.shape(plx))
        y_true = tf.concat([tf.cast(y["output"], plx.dtype), sigma], axis=-1)
        y_pred = tf.concat([plx, plx_logvar], axis=-1)
        loss = self.keras_model.compiled_loss(
            y_true, y_pred, sample_weight, regularization_losses=self.keras_model.losses
        )
        return loss, y, [plx, plx_logvar], sample_weight

    def _metric_results(self):
        results = {}
        for metric in self.keras_model.metrics:
            value = metric.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[metric.name] = value
        return results

    def custom_train_step(self, data):
        """One optimisation step on the Gaia likelihood (replaces astroNN's loss hook)."""
        with tf.GradientTape() as tape:
            loss, y, y_pred, sample_weight = self._step_loss(data, training=True)
        self.keras_model.optimizer.minimize(loss, self.keras_model.trainable_variables, tape=tape)
        self.keras_model.compiled_metrics.update_state(y, y_pred, sample_weight)
        return self._metric_results()

    def custom_test_step(self, data):
        _, y, y_pred, sample_weight = self._step_loss(data, training=False)
        self.keras_model.compiled_metrics.update_state(y, y_pred, sample_weight)
        return self._metric_results()

    def pre_training_checklist_child(self, input_data, labels, sample_weight):
        """astroNN's checklist, then its Python batch generators replaced by ``tf.data`` pipelines.

        The same batches as astroNN's (``n_train // batch_size`` per epoch in a new
        random order each epoch, validation in order) from
        :func:`~astronn_gaiacal.nn.batches.training_batches`: gathered in-graph from
        arrays shared with NumPy, without astroNN's float64 copies or its unused
        ``input_err``.
        """
        input_std = self.input_std
        if isinstance(input_std, dict) and input_data["input_err"].shape[1] == 1:
            # fit()'s zero column: astroNN divides it by the input std, which would make it full size
            self.input_std = {**input_std, "input": np.ones(1)}
        try:
            out = super().pre_training_checklist_child(input_data, labels, sample_weight)
        finally:
            self.input_std = input_std
        norm_train, norm_val, labels_train, labels_val, weight_train, weight_val = out
        gen = self.training_generator
        self.training_generator, shared = training_batches(norm_train, labels_train, weight_train, gen.batch_size,
                                                           len(gen), shuffle=True)
        norm_train = {**norm_train, "input": shared}  # astroNN keeps what it gets back: one copy, not two
        if self.has_val:
            val = self.validation_generator
            self.validation_generator, shared = training_batches(norm_val, labels_val, weight_val, val.batch_size,
                                                                 len(val), shuffle=False)
            norm_val = {**norm_val, "input": shared}
        return norm_train, norm_val, labels_train, labels_val, weight_train, weight_val

    # ------------------------------------------------------------------ inputs
    def has_model_check(self):
        if self.keras_model is None:
            raise NotTrainedError(
                f"{type(self).__name__} has no trained network: call fit() first, or load a saved "
                f"folder with astroNN.models.load_folder()"
            )

    def _check_spectra(self, spectra, name="spectra", dtype=np.float64):
        spectra = _as_2d_float(spectra, name, dtype)
        if self.spectrum_length is not None and spectra.shape[1] != self.spectrum_length:
            raise ValueError(
                f"{name} has {spectra.shape[1]} pixels per star; {type(self).__name__} expects "
                f"{self.spectrum_length}"
            )
        n_bad, bad_rows = 0, []
        for start in range(0, spectra.shape[0], _BLOCK_ROWS):
            bad = _missing(spectra[start:start + _BLOCK_ROWS])
            if bad.any():
                n_bad += int(bad.sum())
                bad_rows.append(start + np.flatnonzero(bad.any(axis=1)))
        if n_bad:
            rows = np.concatenate(bad_rows)
            raise ValueError(
                f"{name} contains {n_bad} NaN/-9999 pixel value(s) in {rows.size} star(s) "
                f"(first: row {rows[0]}); set masked pixels to 1 as the paper's continuum "
                f"normalisation does, or remove those stars"
            )
        if self.pixel_mask is not None:
            spectra = spectra[:, np.asarray(self.pixel_mask, dtype=bool)]
        return spectra

    def feature_matrix(self, features):
        """Offset features as an ``(N, F)`` array in :attr:`offset_features` order.

        Parameters
        ----------
        features : ndarray, astropy Table, pandas DataFrame or dict
            An ``(N, F)`` array in the model's feature order, or a table-like
            object with columns named as :attr:`offset_features`.

        Raises
        ------
        KeyError
            If a named column is missing.
        """
        if self.offset != "multivariate":
            raise ValueError(f"offset={self.offset!r} takes no offset features")
        names = self.offset_features
        if hasattr(features, "colnames") or hasattr(features, "columns") or isinstance(features, dict):
            available = list(getattr(features, "colnames", None) or list(getattr(features, "columns", features)))
            missing = [n for n in names if n not in available]
            if missing:
                raise KeyError(
                    f"offset feature column(s) {missing} missing; the model needs {names}, the table has {available}"
                )
            cols = []
            for n in names:
                col = features[n]
                if isinstance(col, u.Quantity):
                    col = col.to_value(u.K) if n == "teff" and col.unit.physical_type == "temperature" else col.value
                col = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
                cols.append(col)
            return np.column_stack(cols) if cols else np.empty((0, len(names)))
        arr = _as_2d_float(features, "offset_features")
        if arr.shape[1] != len(names):
            raise ValueError(f"offset_features has {arr.shape[1]} columns; the model needs {len(names)}: {names}")
        return arr

    def _split_layout(self, input_data):
        """Spectra (and magnitude, features where present) from spectra-only, spectra+mag or full layouts.

        Views of ``input_data``: float32 or float64 input is not copied."""
        x = _as_2d_float(input_data, "input_data", dtype=None)
        length = self.spectrum_length
        if length is None:
            raise NotTrainedError(f"{type(self).__name__} has no spectrum_length yet")
        widths = {length: "spectra", length + 1: "spectra+magnitude", length + 1 + self.n_features: "full"}
        if x.shape[1] not in widths:
            raise ValueError(
                f"input_data has {x.shape[1]} columns; {type(self).__name__} takes {length} (spectra), "
                f"{length + 1} (spectra + magnitude) or {length + 1 + self.n_features} (full layout)"
            )
        spectra = x[:, :length]
        mag = x[:, length] if x.shape[1] > length else None
        return spectra, mag

    # ------------------------------------------------------------------ fitting
    def _set_normalisation(self, spectra, mag, features, parallax):
        spec_mean, spec_std = _column_moments(spectra)
        spec_std = spec_std if self.standardize_spectra else np.ones(spectra.shape[1])
        spec_std = np.where(spec_std > 0, spec_std, 1.0)
        feat_mean = features.mean(axis=0) if features.shape[1] else np.empty(0)
        feat_std = features.std(axis=0) if features.shape[1] else np.empty(0)
        feat_std = np.where(feat_std > 0, feat_std, 1.0)
        mean = np.concatenate([spec_mean, [mag.mean()], feat_mean])
        std = np.concatenate([spec_std, [1.0], feat_std])
        valid = ~_missing(parallax)
        label_std = float(np.std(parallax[valid])) if valid.sum() > 1 else 1.0
        label_std = label_std if label_std > 0 else 1.0
        self.input_mean = {"input": mean}
        self.input_std = {"input": std}
        self.labels_mean = {"output": np.array([0.0]), "variance_output": np.array([0.0])}
        self.labels_std = {"output": np.array([label_std]), "variance_output": np.array([label_std])}
        self.input_normalizer = Normalizer(mode=self.input_norm_mode, verbose=0)
        self.input_normalizer.mean_labels = dict(self.input_mean)
        self.input_normalizer.std_labels = dict(self.input_std)
        self.labels_normalizer = Normalizer(mode=self.labels_norm_mode, verbose=0)
        self.labels_normalizer.mean_labels = dict(self.labels_mean)
        self.labels_normalizer.std_labels = dict(self.labels_std)
        if features.shape[1]:
            self.feature_ranges = {
                n: [float(lo), float(hi)]
                for n, lo, hi in zip(self.offset_features, features.min(axis=0), features.max(axis=0))
            }

    def _luminosity_source(self, source):
        """The trained model behind ``luminosity_from``, checked against this one."""
        if self.keras_model is not None:
            raise ValueError("luminosity_from needs an untrained model: this one already has a network")
        if isinstance(source, (str, os.PathLike)):
            from .ensemble import load

            source = load(source)
        if not isinstance(source, GaiaCalBCNNBase):
            raise TypeError(f"luminosity_from must be a trained astronn_gaiacal model or its folder (one member, not an "
                            f"ensemble), got {type(source).__name__}")
        source.has_model_check()
        mine = None if self.pixel_mask is None else np.asarray(self.pixel_mask, bool)
        theirs = None if source.pixel_mask is None else np.asarray(source.pixel_mask, bool)
        if (source.spectrum_length != self.spectrum_length or (mine is None) != (theirs is None)
                or (mine is not None and not np.array_equal(mine, theirs))):
            raise ValueError(f"luminosity_from has spectra of {source.spectrum_length} pixels"
                             f"{' with another pixel mask' if mine is not None else ''}; this model has "
                             f"{self.spectrum_length}")
        if source.fakemag_scale != self.fakemag_scale or source.band != self.band:
            raise ValueError(f"luminosity_from uses fakemag_scale {source.fakemag_scale} in {source.band}; this model "
                             f"uses {self.fakemag_scale} in {self.band}")
        return source

    def _adopt_luminosity(self, source, given, freeze):
        """Take the source's spectrum and label normalisation; its weights are set when the network is built."""
        n_pix = self.n_pixels
        for attr in ("input_mean", "input_std"):
            mine = np.asarray(getattr(self, attr)["input"], dtype=float).copy()
            mine[:n_pix] = np.asarray(getattr(source, attr)["input"], dtype=float).ravel()[:n_pix]
            getattr(self, attr)["input"] = mine
            getattr(self.input_normalizer, {"input_mean": "mean_labels", "input_std": "std_labels"}[attr])["input"] = mine
        self.labels_std = {k: np.array(v, dtype=float).copy() for k, v in source.labels_std.items()}
        self.labels_normalizer.std_labels = dict(self.labels_std)
        weights = source.luminosity_model.get_weights()
        if self.luminosity_hidden != source.luminosity_hidden:
            raise ValueError(f"luminosity_from has dense layers {source.luminosity_hidden}; this model has "
                             f"{self.luminosity_hidden}")
        self._luminosity_start = weights
        self.luminosity_frozen = bool(freeze)
        self.luminosity_from = os.path.abspath(os.fspath(given)) if isinstance(given, (str, os.PathLike)) else (
            getattr(source, "folder_name", None) or type(source).__name__)

    def fit(
        self,
        spectra,
        parallax,
        parallax_error,
        magnitude=None,
        offset_features=None,
        spectra_err=None,
        sample_weight=None,
        luminosity_from=None,
        freeze_luminosity=True,
    ):
        """Train on Gaia catalogue parallaxes with astroNN's training loop.

        Parameters
        ----------
        spectra : ndarray, shape (N, spectrum_length)
            Continuum-normalised spectra (or, with ``magnitude=None``, the full
            astroNN input layout ``[spectrum | magnitude | features]``).
        parallax, parallax_error : array_like or Quantity, shape (N,)
            Gaia catalogue parallax and error (mas), not corrected for any
            zero-point.  Negative parallaxes are valid; -9999/NaN parallaxes
            are masked in the likelihood.
        magnitude : array_like, shape (N,)
            Extinction-corrected apparent magnitude in :attr:`band`.
        offset_features : ndarray, Table, DataFrame or dict, optional
            Required for ``offset='multivariate'`` (see :meth:`feature_matrix`).
        spectra_err : ndarray, optional
            Spectra uncertainties (kept for astroNN's interface; unused by the network).
        sample_weight : ndarray, optional
        luminosity_from : GaiaCalBCNNBase or str, optional
            A trained model (or its folder) whose luminosity network this one
            starts from, with that model's spectrum and label normalisation:
            the second stage of a two-stage calibration, e.g. a multivariate
            offset fitted with the luminosity scale fixed by a constant-offset
            model (docs/calibration.rst).  Needs an untrained model with the
            same spectrum layout and luminosity architecture.
        freeze_luminosity : bool
            With ``luminosity_from``: keep the luminosity network fixed and fit
            only the offset network (default), or fine-tune both.

        Raises
        ------
        ValueError
            Wrong shapes, NaN/-9999 in spectra, magnitudes or features, a
            non-positive parallax error for a star with a parallax, or a
            ``luminosity_from`` model that does not fit this one.
        """
        if magnitude is None:
            if self.spectrum_length is None:
                raise ValueError("give magnitude (the full-layout call needs a known spectrum_length)")
            full = _as_2d_float(spectra, "spectra")
            expected = self.spectrum_length + 1 + self.n_features
            if full.shape[1] != expected:
                raise ValueError(
                    f"without magnitude, spectra must be the full layout with {expected} columns; got {full.shape[1]}"
                )
            spectra, magnitude = full[:, : self.spectrum_length], full[:, self.spectrum_length]
            if self.n_features:
                offset_features = full[:, self.spectrum_length + 1 :]
        if self.spectrum_length is None:
            self.spectrum_length = int(_as_2d_float(spectra, "spectra").shape[1])
        spec = self._check_spectra(spectra, dtype=np.float32)  # the network's precision; no float64 copy
        n = spec.shape[0]
        mag = _as_1d_float(magnitude, "magnitude", n, unit=u.mag)
        if _missing(mag).any():
            raise ValueError(f"magnitude has {int(_missing(mag).sum())} NaN/-9999 value(s); remove those stars")
        plx = _as_1d_float(parallax, "parallax", n, unit=u.mas)
        plx_err = _as_1d_float(parallax_error, "parallax_error", n, unit=u.mas)
        has_plx = ~_missing(plx)
        if not has_plx.any():
            raise ValueError("parallax has no valid value (all NaN/-9999)")
        bad_err = has_plx & (_missing(plx_err) | (plx_err <= 0))
        if bad_err.any():
            raise ValueError(
                f"parallax_error must be positive and finite where parallax is given; {int(bad_err.sum())} star(s) are not"
            )
        if self.offset == "multivariate":
            if offset_features is None:
                raise ValueError(f"offset='multivariate' needs offset_features {self.offset_features}")
            feats = self.feature_matrix(offset_features)
            if feats.shape[0] != n:
                raise ValueError(f"offset_features has {feats.shape[0]} rows; spectra has {n}")
            if _missing(feats).any():
                bad = np.unique(np.nonzero(_missing(feats))[1])
                raise ValueError(
                    f"offset_features contain NaN/-9999 in column(s) {[self.offset_features[i] for i in bad]}; "
                    f"remove those stars from the training set"
                )
        else:
            if offset_features is not None:
                raise ValueError(f"offset={self.offset!r} takes no offset_features")
            feats = np.empty((n, 0))
        labels = np.where(has_plx, plx, MAGIC_NUMBER)[:, None]
        labels_err = np.where(has_plx, plx_err, 0.0)[:, None]
        source = None if luminosity_from is None else self._luminosity_source(luminosity_from)
        if self.input_normalizer is None:
            self._set_normalisation(spec, mag, feats, labels[:, 0])
        if source is not None:
            self._adopt_luminosity(source, luminosity_from, freeze_luminosity)
        x = np.empty((n, spec.shape[1] + 1 + feats.shape[1]), np.float32)  # one float32 copy of the spectra
        x[:, : spec.shape[1]] = spec
        x[:, spec.shape[1]] = mag
        x[:, spec.shape[1] + 1 :] = feats
        x_err = None
        if spectra_err is not None:
            err = _as_2d_float(spectra_err, "spectra_err")
            if err.shape[0] != n:
                raise ValueError(f"spectra_err has {err.shape[0]} rows; spectra has {n}")
            if self.pixel_mask is not None:
                err = err[:, np.asarray(self.pixel_mask, dtype=bool)]
            x_err = np.concatenate([err, np.zeros((n, 1 + feats.shape[1]))], axis=1).astype(np.float32)
        n_train = n - int(n * (self.val_size or 0))
        if n_train < self.batch_size:
            raise ValueError(
                f"{n_train} training stars (after the {self.val_size:.0%} validation split) is fewer than "
                f"batch_size={self.batch_size}: give more stars or lower batch_size"
            )
        if not 0.0 <= float(self.weight_averaging) < 1.0:
            raise ValueError(f"weight_averaging must be a fraction in [0, 1), got {self.weight_averaging!r}")
        steps_per_epoch = n_train // self.batch_size
        patience, callbacks = self.reduce_lr_patience, self.callbacks
        self.reduce_lr_patience = max(patience, int(np.ceil(self.reduce_lr_min_patience_steps / steps_per_epoch)))
        if self.weight_averaging:
            start = int(round(self.max_epochs * (1.0 - float(self.weight_averaging))))
            extra = callbacks if isinstance(callbacks, list) else ([] if callbacks is None else [callbacks])
            self.callbacks = [*extra, WeightAveraging(min(start, self.max_epochs - 1))]
        try:
            # no spectra errors: one zero column instead of astroNN's full-size zeros (unused by the network)
            inputs_err = np.zeros((n, 1), np.float32) if x_err is None else x_err
            super().fit(x, labels, inputs_err=inputs_err, labels_err=labels_err, sample_weight=sample_weight)
        finally:
            self.reduce_lr_patience, self.callbacks = patience, callbacks
        return self

    # ------------------------------------------------------------------ saving
    def post_training_checklist_child(self):
        super().post_training_checklist_child()
        path = os.path.join(self.fullfilepath, "astroNN_model_parameter.json")
        with open(path) as f:
            params = json.load(f)
        params[PLUGIN_KEY] = self._plugin_config()
        with open(path, "w") as f:
            json.dump(params, f, indent=4, sort_keys=True)

    def save(self, name=None, model_plot=False, overwrite=False):
        """Save an astroNN model folder atomically (written aside, then renamed).

        Parameters
        ----------
        name : str or path, optional
            Folder; defaults to astroNN's automatic ``astroNN_<date>_run<NNN>``.
        overwrite : bool
            Replace an existing folder (only once the new one is complete);
            otherwise an existing folder raises ``FileExistsError``.
        """
        self.has_model_check()
        if name is None:
            from astroNN.shared.nn_tools import folder_runnum

            name = folder_runnum()
        final = os.path.abspath(os.fspath(name))
        with atomic_directory(final, overwrite=overwrite) as tmp:
            inner = os.path.join(tmp, os.path.basename(final))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                super().save(inner, model_plot=model_plot)
            for entry in os.listdir(inner):
                os.replace(os.path.join(inner, entry), os.path.join(tmp, entry))
            os.rmdir(inner)
        self.folder_name = final
        self.fullfilepath = final + os.sep
        return final

    # ------------------------------------------------------------------ inference
    def _normalise_spectra(self, spectra):
        n_pix = self.n_pixels
        mean = np.asarray(self.input_mean["input"], dtype=float).ravel()[:n_pix]
        std = np.asarray(self.input_std["input"], dtype=float).ravel()
        std = std[:n_pix] if std.size > 1 else np.ones(n_pix)
        out = np.empty(spectra.shape, np.float32)
        for start in range(0, spectra.shape[0], _BLOCK_ROWS):  # float64 arithmetic, one block at a time
            out[start:start + _BLOCK_ROWS] = (spectra[start:start + _BLOCK_ROWS] - mean) / std
        return out

    def _label_std(self):
        return float(np.asarray(self.labels_std["output"]).ravel()[0])

    def predict(self, input_data, inputs_err=None, batch_size=None):
        """Fakemag with MC-dropout uncertainties, as astroNN's Bayesian models return them.

        Parameters
        ----------
        input_data : ndarray
            Spectra ``(N, spectrum_length)``, spectra + magnitude, or the full layout.
        inputs_err : ignored
            Kept for astroNN's signature.
        batch_size : int, optional
            Stars per compiled MC-dropout call (each is ``batch_size * mc_num``
            rows); by default chosen so that a call holds about
            :data:`~astronn_gaiacal.nn.inference.DEFAULT_CALL_VALUES` input values
            (:data:`~astronn_gaiacal.nn.inference.DEFAULT_FUSED_CALL_VALUES` for the
            paper's network, whose passes run in fused kernels).

        Returns
        -------
        fakemag : ndarray, shape (N, 1)
        uncertainty : dict
            ``{'total', 'model', 'predictive'}``, each ``(N, 1)``: the
            predictive (aleatoric) and MC-dropout model (epistemic) standard
            deviations and their quadrature sum.
        """
        self.has_model_check()
        spectra, _ = self._split_layout(input_data)
        x = self._normalise_spectra(self._check_spectra(spectra, dtype=None))  # no full-size copy
        mean, var = mc_predict(
            self.keras_model_predict, x, mc_num=self.mc_num, batch_size=batch_size,
            progress=self.verbose > 0, desc="fakemag", bf16=self.inference_bf16,
            fused_kernels=self.inference_fused,
        )
        scale = self._label_std()
        fakemag = mean[:, :1] * scale
        model_var = var[:, :1] * scale**2
        predictive_var = np.exp(mean[:, 1:2]) * scale**2
        return fakemag, {
            "total": np.sqrt(model_var + predictive_var),
            "model": np.sqrt(model_var),
            "predictive": np.sqrt(predictive_var),
        }

    def test(self, input_data, inputs_err=None, batch_size=None):
        """Alias of :meth:`predict` (astroNN's older name)."""
        return self.predict(input_data, inputs_err=inputs_err, batch_size=batch_size)

    def _magnitude_for(self, input_data, magnitude):
        spectra, mag_from_layout = self._split_layout(input_data)
        if magnitude is None:
            if mag_from_layout is None:
                raise ValueError("magnitude is required when input_data holds spectra only")
            magnitude = mag_from_layout
        return spectra, _as_1d_float(magnitude, "magnitude", spectra.shape[0], unit=u.mag)

    def predict_parallax(self, input_data, magnitude=None, batch_size=None):
        """Spectro-photometric parallax :math:`L\\,10^{-m/5}` (a true parallax: no zero-point).

        Returns
        -------
        parallax : Quantity [mas], shape (N,)
        uncertainty : dict of Quantity [mas]
            ``{'total', 'model', 'predictive'}``.
        """
        spectra, mag = self._magnitude_for(input_data, magnitude)
        fakemag, err = self.predict(spectra, batch_size=batch_size)
        plx = conversions.fakemag_to_parallax(fakemag[:, 0], mag)
        return plx, {k: conversions.fakemag_to_parallax(fakemag[:, 0], mag, v[:, 0])[1] for k, v in err.items()}

    def predict_distance(self, input_data, magnitude=None, batch_size=None):
        """Spectro-photometric distance :math:`1000\\,10^{m/5}/L` pc.

        Returns
        -------
        distance : Quantity [pc], shape (N,)
        uncertainty : dict of Quantity [pc]
            ``{'total', 'model', 'predictive'}`` (first-order propagation).
        """
        spectra, mag = self._magnitude_for(input_data, magnitude)
        fakemag, err = self.predict(spectra, batch_size=batch_size)
        dist = conversions.fakemag_to_distance(fakemag[:, 0], mag)
        return dist, {k: conversions.fakemag_to_distance(fakemag[:, 0], mag, v[:, 0])[1] for k, v in err.items()}

    def predict_zeropoint(self, features=None, mc_num=None, batch_size=None, shared_masks=False):
        """The offset calibration model on its own: per-star zero-point with MC-dropout spread.

        Parameters
        ----------
        features : ndarray, Table, DataFrame or dict, optional
            Offset features of any Gaia stars (multivariate); ignored for the
            constant model, which returns one value.
        mc_num : int, optional
            Stochastic passes; defaults to :attr:`mc_num`.
        batch_size : int, optional
        shared_masks : bool
            Multivariate only: share each pass's dropout masks by a batch of
            stars (:func:`~astronn_gaiacal.nn.inference.mc_predict_shared_masks`):
            about 10x faster, the same distribution for every star, MC noise
            correlated between the stars of a batch.  Off by default.

        Returns
        -------
        zeropoint, zeropoint_error : Quantity [mas]
            Shape (N,) (multivariate) or scalar (constant).  Rows with
            NaN/-9999 features come back as NaN.  Convention:
            ``parallax_gaia = parallax_true + zeropoint``.
        """
        self.has_model_check()
        if self.offset == "none":
            raise ValueError("this model was trained with offset='none': it has no zero-point model")
        mc_num = int(mc_num or self.mc_num)
        if self.offset == "constant":
            mean, var = mc_predict(self.offset_model, np.ones((1, 1), np.float32), mc_num=mc_num, progress=False)
            scale = self._label_std()
            return mean[0, 0] * scale * u.mas, np.sqrt(var[0, 0]) * scale * u.mas
        feats = self.feature_matrix(features)
        bad = _missing(feats).any(axis=1)
        n_pix = self.n_pixels
        mean_all = np.asarray(self.input_mean["input"], dtype=float).ravel()
        std_all = np.asarray(self.input_std["input"], dtype=float).ravel()
        f_mean, f_std = mean_all[n_pix + 1 :], std_all[n_pix + 1 :]
        x = np.where(bad[:, None], 0.0, (np.where(bad[:, None], 0.0, feats) - f_mean) / f_std).astype(np.float32)
        if shared_masks:
            mean, var = mc_predict_shared_masks(
                self.offset_model, x, mc_num=mc_num, batch_size=batch_size or 4096, progress=self.verbose > 0,
                desc="zero-point",
            )
        else:
            mean, var = mc_predict(
                self.offset_model, x, mc_num=mc_num, batch_size=batch_size, progress=self.verbose > 0, desc="zero-point"
            )
        scale = self._label_std()
        zp = np.where(bad, np.nan, mean[:, 0] * scale)
        zp_err = np.where(bad, np.nan, np.sqrt(var[:, 0]) * scale)
        return zp * u.mas, zp_err * u.mas

    def refit_zeropoint(self, input_data, parallax, parallax_error, magnitude=None, batch_size=None, scatter=None,
                        fit_scale=False):
        """Maximum-likelihood constant zero-point with this model's luminosity network held fixed.

        The model parallaxes are the MC-dropout means :math:`L\\,10^{-m/5}`
        (no dropout noise, unlike during training); the zero-point and the
        fractional scatter of the model parallaxes are then fitted to the Gaia
        parallaxes (:func:`astronn_gaiacal.zeropoint.fit.fit_zeropoint`).
        Works for any offset variant (for ``'none'`` it measures the offset the
        network absorbed).  Stars without a Gaia parallax (NaN/-9999) are left
        out; ``n_stars`` of the result counts the stars used.

        Parameters
        ----------
        input_data : ndarray
            Spectra (with ``magnitude``) or the full input layout.
        parallax, parallax_error : array_like or Quantity [mas]
            Gaia catalogue parallaxes and errors, not zero-point corrected.
        magnitude : array_like, optional
            Extinction-corrected magnitudes in :attr:`band`.
        batch_size : int, optional
        scatter : float, optional
            Fix the fractional scatter instead of fitting it.
        fit_scale : bool
            Also fit a common luminosity scale (the zero-point is then the
            intercept at zero parallax).

        Returns
        -------
        ZeropointFit
        """
        from ..zeropoint.fit import fit_zeropoint

        has, plx, plx_err, model_plx = self._refit_stars(input_data, parallax, parallax_error, magnitude, batch_size)
        return fit_zeropoint(plx, plx_err, model_plx, scatter=scatter, fit_scale=fit_scale)

    def _refit_inputs(self, input_data, parallax, parallax_error, magnitude):
        """Stars with a Gaia parallax: mask, and their spectra, magnitudes, parallaxes and errors (mas)."""
        spectra, mag = self._magnitude_for(input_data, magnitude)
        n = spectra.shape[0]
        plx = _as_1d_float(parallax, "parallax", n, unit=u.mas)
        plx_err = _as_1d_float(parallax_error, "parallax_error", n, unit=u.mas)
        has = ~_missing(plx)
        if has.sum() < 3:
            raise ValueError(f"parallax has {int(has.sum())} valid value(s); at least 3 are needed")
        if not has.all():
            spectra, mag, plx, plx_err = spectra[has], mag[has], plx[has], plx_err[has]
        return has, spectra, mag, plx, plx_err

    def _refit_stars(self, input_data, parallax, parallax_error, magnitude, batch_size):
        """Stars with a Gaia parallax: mask, parallaxes, errors and MC-mean model parallaxes (mas)."""
        has, spectra, mag, plx, plx_err = self._refit_inputs(input_data, parallax, parallax_error, magnitude)
        fakemag, _ = self.predict(spectra, batch_size=batch_size)
        return has, plx, plx_err, conversions.fakemag_to_parallax(fakemag[:, 0], mag)

    def refit_zeropoint_trend(self, input_data, parallax, parallax_error, features, magnitude=None, names=None,
                              fit_scale=True, batch_size=None, separately=False):
        """Zero-point quadratic in each feature (and a luminosity scale) with this model's luminosity network held fixed.

        The additive form of the paper's eqs. 7-9, fitted by maximum likelihood
        to the Gaia parallaxes (:func:`astronn_gaiacal.zeropoint.fit.fit_zeropoint_trend`);
        the free scale keeps a luminosity-scale error of the network out of the
        trend.  Works for any offset variant; stars without a Gaia parallax are
        left out.

        Parameters
        ----------
        input_data : ndarray
            Spectra (with ``magnitude``) or the full input layout.
        parallax, parallax_error : array_like or Quantity [mas]
        features : Table, dict or DataFrame
            The feature columns of the same stars.
        magnitude : array_like, optional
        names : sequence of str, optional
            Features to fit; default :attr:`offset_features`.
        fit_scale : bool
        batch_size : int, optional
        separately : bool
            Fit one quadratic per feature, each on its own (the marginal trends
            of the paper's eqs. 7-9), from one MC-dropout prediction.

        Returns
        -------
        ZeropointTrendFit, or ``{name: ZeropointTrendFit}`` with ``separately=True``
        """
        from ..zeropoint.fit import _feature_column, fit_zeropoint_trend

        n = self._magnitude_for(input_data, magnitude)[0].shape[0]
        names = list(names or self.offset_features)
        columns = {name: _feature_column(features, name, n) for name in names}
        has, plx, plx_err, model_plx = self._refit_stars(input_data, parallax, parallax_error, magnitude, batch_size)
        columns = {name: col[has] for name, col in columns.items()}
        if separately:
            return {name: fit_zeropoint_trend(plx, plx_err, model_plx, {name: columns[name]}, names=[name],
                                              fit_scale=fit_scale) for name in names}
        return fit_zeropoint_trend(plx, plx_err, model_plx, columns, names=names, fit_scale=fit_scale)

    def zeropoint(self, mc_num=None):
        """The constant model's zero-point and its MC-dropout spread, in micro-arcsec.

        Returns
        -------
        value, error : Quantity [uas]
        """
        if self.offset != "constant":
            raise ValueError(f"zeropoint() is for offset='constant'; this model has offset={self.offset!r}")
        value, error = self.predict_zeropoint(mc_num=mc_num)
        return value.to(u.uas), error.to(u.uas)
