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
fakemag returned by :meth:`~astronn_gaiacal.models.prediction.JointPrediction.predict` is
:math:`L = k f \times` ``labels_std``.  The sign convention is
:math:`\varpi_{\rm Gaia} = \varpi_{\rm true} + \varpi_0`.

The class is assembled from its parts: options, ``fit`` and persistence
here; the graph in :mod:`~astronn_gaiacal.models.network`, compilation and
the training step in :mod:`~astronn_gaiacal.models.training`, predictions in
:mod:`~astronn_gaiacal.models.prediction`, the luminosity-network transfer in
:mod:`~astronn_gaiacal.models.transfer`, input checks in
:mod:`~astronn_gaiacal.models.inputs` and the operations shared with a deep
ensemble in :mod:`~astronn_gaiacal.models.protocol`.
"""
import os
import warnings

import astroNN.config as astronn_config
import numpy as np
from astroNN.models.base_bayesian_cnn import BayesianCNNBase
from astroNN.nn.utilities import Normalizer
from astroNN.shared.nn_tools import folder_runnum

from .._versions import __version__
from ..constants import (
    DEFAULT_BAND,
    DEFAULT_OFFSET_HEAD,
    MAGIC_NUMBER,
    OFFSET_HEADS,
    PAPER_FAKEMAG_SCALE,
    PAPER_OFFSET_FEATURES,
    TRAINING_NOISE_SNR,
    ZEROPOINT_CONVENTION,
)
from ..io.atomic import atomic_directory
from ..nn.callbacks import WeightAveraging
from ..nn.layers import BlockConv1D, FastMaxPooling1D, FastMCDropout
from ..nn.losses import DEFAULT_LOSS, LOSS_CLASSES, loss_from_name
from ..nn.noise import TrainingNoiseWarning, spectra_snr
from .calibration import UNCERTAINTY_KEY, CalibratedUncertainty, UncertaintyCalibration, warn_uncalibrated
from .convergence import CONVERGENCE_KEY, constant_luminosity_loss, training_convergence, warn_not_converged
from ..zeropoint.calibrated import CalibratedZeropoint
from .folders import PLUGIN_KEY, ZEROPOINT_KEY, read_plugin_config, write_plugin_config
from .inputs import (
    NotTrainedError,
    as_2d_float,
    check_spectra,
    feature_matrix,
    feature_ranges,
    normalisation_moments,
    training_features,
    training_labels,
    training_magnitude,
    unpack_full_layout,
)
from .network import JointNetwork
from .prediction import JointPrediction
from .protocol import ZeropointModel
from .training import LikelihoodTraining
from .transfer import LuminosityTransfer

__all__ = [
    "OFFSET_VARIANTS",
    "PLUGIN_KEY",
    "ZEROPOINT_CONVENTION",
    "GaiaCalBCNNBase",
    "NotTrainedError",
    "check_magic_number",
]

OFFSET_VARIANTS = ("none", "constant", "multivariate")


def check_magic_number():
    """Check that astroNN masks the same missing-value marker the plugin writes.

    The plugin marks missing values with
    :data:`~astronn_gaiacal.constants.MAGIC_NUMBER`; astroNN's ``Normalizer``
    masks ``astroNN.config.MAGIC_NUMBER``, read from the ``MagicNumber``
    option of the ``[Basics]`` section of astroNN's ``config.ini``
    (``~/.astroNN/config.ini``).

    Raises
    ------
    ValueError
        The two differ.
    """
    configured = float(astronn_config.MAGIC_NUMBER)
    if configured != MAGIC_NUMBER:
        raise ValueError(
            f"astroNN's config sets MagicNumber = {configured:g} ([Basics] MagicNumber in ~/.astroNN/config.ini), "
            f"but astronn_gaiacal marks missing values with {MAGIC_NUMBER:g}: set MagicNumber = {MAGIC_NUMBER:g} "
            f"there so astroNN masks the same values"
        )


class GaiaCalBCNNBase(JointNetwork, LikelihoodTraining, JointPrediction, LuminosityTransfer, CalibratedUncertainty,
                      ZeropointModel, BayesianCNNBase):
    """Base class of the joint distance + Gaia zero-point models.

    Subclasses describe a survey with class attributes and may override
    :meth:`~astronn_gaiacal.models.network.JointNetwork.luminosity_network` (and
    :meth:`~astronn_gaiacal.models.network.JointNetwork.offset_network`).  The prediction
    and refit methods are those of :class:`~astronn_gaiacal.models.ZeropointModel`.

    Parameters
    ----------
    offset : {'none', 'constant', 'multivariate'}
        Zero-point model: fixed at 0, one constant, or a function of
        ``offset_features``.
    offset_features : sequence of str, optional
        Names of the offset-model inputs (multivariate only); defaults to
        ``default_offset_features``.
    offset_head : {'network', 'quadratic'}, optional
        Multivariate offset model: the paper's dense network or one quadratic
        per feature (:class:`~astronn_gaiacal.nn.layers.QuadraticOffset`);
        default :data:`~astronn_gaiacal.constants.DEFAULT_OFFSET_HEAD`.
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
    training_noise_snr : float or None
        Lowest S/N ``fit`` degrades the training spectra to: every step, each
        star gets Gaussian noise down to an S/N drawn log-uniformly between this
        and its own (:mod:`astronn_gaiacal.nn.noise`; needs ``spectra_err``), so that
        the network is trained at the S/N it is applied at.  Default
        :data:`~astronn_gaiacal.constants.TRAINING_NOISE_SNR`; ``None`` trains on the
        spectra as given (the paper).
    jit_compile : bool
        Compile the whole training step with XLA (off by default: on CPU the
        per-layer XLA kernels below are faster, see :doc:`/performance`).
    conv_layer, pool_layer, dropout_layer : class
        Layers :meth:`~astronn_gaiacal.models.network.JointNetwork.luminosity_network` builds: :class:`~astronn_gaiacal.nn.layers.BlockConv1D`,
        :class:`~astronn_gaiacal.nn.layers.FastMaxPooling1D` and
        :class:`~astronn_gaiacal.nn.layers.FastMCDropout` (the same operations
        as ``Conv1D``, ``MaxPooling1D`` and astroNN's ``MCDropout``, and the
        same weights, computed faster on CPU).  Set them to the Keras/astroNN
        classes to build the original layers.
    inference_bf16 : bool
        Run the MC-dropout matrix products of :meth:`~astronn_gaiacal.models.prediction.JointPrediction.predict` in bfloat16
        (off by default; slower on CPUs without native bf16 and accurate to
        about 1e-3 relative, see :doc:`/performance`).
    train_fused : bool or None
        Run the Conv1D -> ReLU -> dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout
        stack of each training step (forward and backward) as one Numba kernel each
        (:mod:`astronn_gaiacal.nn.fused_training`; never with ``jit_compile``).  ``None``
        (default) chooses by device (:func:`~astronn_gaiacal.nn.device.use_fused_kernels`:
        the kernels on a CPU, TensorFlow on a GPU or without Numba); ``False`` runs those
        layers as TensorFlow operations.
    inference_fused : bool or None
        Run the dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout
        stretch of each MC-dropout pass of :meth:`~astronn_gaiacal.models.prediction.JointPrediction.predict` as one Numba kernel
        (:mod:`astronn_gaiacal.nn.fused`); ``None`` (default) chooses by device as
        ``train_fused``, ``False`` runs those layers as separate TensorFlow operations.
    """

    spectrum_length = None
    pixel_mask = None
    band = DEFAULT_BAND
    fakemag_scale = PAPER_FAKEMAG_SCALE
    default_offset = "constant"
    default_offset_features = PAPER_OFFSET_FEATURES
    gaia_release = "dr2"
    standardize_spectra = False
    training_noise_snr = TRAINING_NOISE_SNR
    #: :func:`~astronn_gaiacal.models.convergence.training_convergence` of the last fit (None: not known).
    training_convergence = None
    offset_hidden = (32, 16)
    inference_bf16 = False
    inference_fused = None
    train_fused = None
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
        offset_head=None,
    ):
        super().__init__()
        self.name = "Joint spectro-luminosity and Gaia zero-point Bayesian neural network"
        self._implementation_version = __version__
        self.offset = offset or self.default_offset
        self.offset_features = list(offset_features or self.default_offset_features)
        self.offset_head = offset_head or DEFAULT_OFFSET_HEAD
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
        self._noise_source = None  # (errors, snr) of the training noise during fit
        self.validation_split = None  # {'n_stars', 'val_size', 'seed'} of the last fit

    # ------------------------------------------------------------------ options
    def _validate_options(self):
        if self.offset not in OFFSET_VARIANTS:
            raise ValueError(f"offset must be one of {OFFSET_VARIANTS}, got {self.offset!r}")
        if self.offset_head not in OFFSET_HEADS:
            raise ValueError(f"offset_head must be one of {OFFSET_HEADS}, got {self.offset_head!r}")
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
    def n_features(self):
        """Number of offset-feature columns in the input layout."""
        return len(self.offset_features) if self.offset == "multivariate" else 0

    @property
    def n_pixels(self):
        """Number of spectrum columns the network sees (after ``pixel_mask``)."""
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
            "offset_head": self.offset_head,
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
            "max_epochs": int(self.max_epochs),
            "lr": float(self.lr),
            "training_noise_snr": None if self.training_noise_snr is None else float(self.training_noise_snr),
            "luminosity_from": self.luminosity_from,
            "luminosity_frozen": bool(self.luminosity_frozen),
            "parallax_unit": "mas",
            "zeropoint_convention": ZEROPOINT_CONVENTION,
            "validation_split": self.validation_split,
            UNCERTAINTY_KEY: None if self.uncertainty_calibration is None else self.uncertainty_calibration.to_dict(),
            CONVERGENCE_KEY: self.training_convergence,
            ZEROPOINT_KEY: None if self.zeropoint_calibration is None else self.zeropoint_calibration.to_dict(),
        }

    def _restore_plugin_config(self):
        """Read the plugin's options from a folder being loaded by ``load_folder``."""
        if self._plugin_config_restored or not self.fullfilepath:
            return
        block = read_plugin_config(self.fullfilepath)
        if block is None:
            return
        check_magic_number()
        self.offset = block["offset"]
        self.offset_features = list(block["offset_features"]) or list(self.default_offset_features)
        self.offset_head = block.get("offset_head", "network")  # folders written before the choice existed
        self.feature_ranges = block.get("feature_ranges")
        self.spectrum_length = int(block["spectrum_length"])
        self.fakemag_scale = float(block["fakemag_scale"])
        self.loss_name = block["loss"]
        self.loss_config = dict(block.get("loss_config") or {})
        self.variance_propagation = block["variance_propagation"]
        self.offset_output_activation = block.get("offset_output_activation", "linear")
        self.weight_averaging = float(block.get("weight_averaging", 0.0))
        self.max_epochs = int(block.get("max_epochs", self.max_epochs))
        self.lr = float(block.get("lr", self.lr))
        if "training_noise_snr" in block:  # folders written before the option trained without the noise
            self.training_noise_snr = block["training_noise_snr"]
        else:
            self.training_noise_snr = None
        self.luminosity_from = block.get("luminosity_from")
        self.luminosity_frozen = bool(block.get("luminosity_frozen", False))
        self.validation_split = block.get("validation_split")
        self.training_convergence = block.get(CONVERGENCE_KEY)  # None in folders saved before the check
        self.uncertainty_calibration = UncertaintyCalibration.from_dict(block.get(UNCERTAINTY_KEY))
        if self.uncertainty_calibration is None:
            warn_uncalibrated(self.fullfilepath)
        self.zeropoint_calibration = CalibratedZeropoint.from_dict(block.get(ZEROPOINT_KEY))
        self._validate_options()
        self._plugin_config_restored = True

    # ------------------------------------------------------------------ inputs
    def has_model_check(self):
        if self.keras_model is None:
            raise NotTrainedError(
                f"{type(self).__name__} has no trained network: call fit() first, or load a saved "
                f"folder with astroNN.models.load_folder()"
            )

    def feature_matrix(self, features):
        """Offset features as an ``(N, F)`` array in ``offset_features`` order.

        Parameters
        ----------
        features : ndarray, astropy Table, pandas DataFrame or dict
            An ``(N, F)`` array in the model's feature order, or a table-like
            object with columns named as ``offset_features``.

        Raises
        ------
        KeyError
            If a named column is missing.
        """
        if self.offset != "multivariate":
            raise ValueError(f"offset={self.offset!r} takes no offset features")
        return feature_matrix(features, self.offset_features)

    # ------------------------------------------------------------------ fitting
    def _set_normalisation(self, spectra, mag, features, labels):
        mean, std, label_std = normalisation_moments(spectra, mag, features, labels, self.standardize_spectra)
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
            self.feature_ranges = feature_ranges(features, self.offset_features)

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
        validation_seed=None,
        calibrate_zeropoint=True,
        snr=None,
    ):
        """Train on Gaia catalogue parallaxes with astroNN's training loop, then calibrate the uncertainties.

        The uncertainty scale is fitted on the validation split (``val_size``)
        with the Gaia parallaxes
        (:meth:`~astronn_gaiacal.models.calibration.CalibratedUncertainty.calibrate_uncertainties`; off with ``calibrate_at_fit = False``;
        too few usable stars leave it uncalibrated, with an
        :class:`~astronn_gaiacal.models.calibration.UncalibratedWarning`).

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
            Extinction-corrected apparent magnitude in ``band``.
        offset_features : ndarray, Table, DataFrame or dict, optional
            Required for ``offset='multivariate'`` (see :meth:`feature_matrix`).
        spectra_err : ndarray, optional
            Spectra uncertainties: the noise of ``training_noise_snr`` scales with
            them (without them, with flux / ``snr``; without either the spectra
            are used as given, with a :class:`~astronn_gaiacal.nn.noise.TrainingNoiseWarning`).
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
        validation_seed : int, optional
            Seed of the validation split, so that several trainings (the members
            of an ensemble) hold out the same stars; default astroNN's own random
            split, whose stars are recorded.
        calibrate_zeropoint : bool
            Refit the zero-point (or trend) on the training stars at the end
            (:meth:`~astronn_gaiacal.models.ZeropointModel.calibrate_zeropoint`;
            also off with ``calibrate_at_fit = False``); an ensemble's members
            leave it to the ensemble.
        snr : array_like, shape (N,), optional
            The spectra's S/N (default: from ``spectra_err``,
            :func:`~astronn_gaiacal.nn.noise.spectra_snr`).  Stars without a
            finite positive S/N are not degraded.

        Raises
        ------
        ValueError
            Wrong shapes, NaN/-9999 in spectra, magnitudes or features, a
            non-positive parallax error for a star with a parallax, or a
            ``luminosity_from`` model that does not fit this one.
        """
        check_magic_number()
        if validation_seed is not None:
            self.validation_seed = int(validation_seed)
        if magnitude is None:
            spectra, magnitude, layout_features = unpack_full_layout(self, spectra)
            if layout_features is not None:
                offset_features = layout_features
        if self.spectrum_length is None:
            self.spectrum_length = int(as_2d_float(spectra, "spectra").shape[1])
        spec = check_spectra(self, spectra, dtype=np.float32)  # the network's precision; no float64 copy
        n = spec.shape[0]
        mag = training_magnitude(magnitude, n)
        labels, labels_err = training_labels(parallax, parallax_error, n)
        feats = training_features(self, offset_features, n)
        source = None if luminosity_from is None else self._luminosity_source(luminosity_from)
        if self.input_normalizer is None:
            self._set_normalisation(spec, mag, feats, labels[:, 0])
        if source is not None:
            self._adopt_luminosity(source, luminosity_from, freeze_luminosity)
        x = np.empty((n, spec.shape[1] + 1 + feats.shape[1]), np.float32)  # one float32 copy of the spectra
        x[:, : spec.shape[1]] = spec
        x[:, spec.shape[1]] = mag
        x[:, spec.shape[1] + 1 :] = feats
        self._noise_source = self._training_noise_source(spec, spectra_err, snr, n)
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
            # one zero column instead of astroNN's full-size input errors (the network does not read them)
            inputs_err = np.zeros((n, 1), np.float32)
            super().fit(x, labels, inputs_err=inputs_err, labels_err=labels_err, sample_weight=sample_weight)
        finally:
            self.reduce_lr_patience, self.callbacks = patience, callbacks
            self._noise_source = None
        loss = (getattr(getattr(self, "history", None), "history", None) or {}).get("loss")
        self.training_convergence = None if loss is None else training_convergence(loss, constant_luminosity_loss(
            labels[:, 0], labels_err[:, 0], mag, self.loss_name, self.loss_config, self._label_std()))
        warn_not_converged(self.training_convergence, type(self).__name__)
        self.uncertainty_calibration = None  # the scale of an earlier fit does not hold any more
        self._calibrate_after_fit(spectra, labels[:, 0], labels_err[:, 0], mag, feats)  # docs/calibration.rst
        self.zeropoint_calibration = None
        if calibrate_zeropoint and self.calibrate_at_fit:
            self._calibrate_zeropoint_after_fit(spec, labels[:, 0], labels_err[:, 0], mag,
                                                dict(zip(self.offset_features, feats.T)))
        return self

    def _training_noise_source(self, spec, spectra_err, snr, n):
        """``(errors, snr)`` of the training noise (:mod:`astronn_gaiacal.nn.noise`), or None."""
        if self.training_noise_snr is None:
            return None
        if spectra_err is None and snr is None:
            warnings.warn(
                f"{type(self).__name__}.fit got neither spectra_err nor snr, so the network is trained only at the "
                f"S/N of the training spectra and its luminosities are biased low on noisier ones: pass spectra_err "
                f"or snr, or set training_noise_snr = None to train on the spectra as given", TrainingNoiseWarning,
                stacklevel=3)
            self.training_noise_snr = None  # what the folder records: the spectra were used as given
            return None
        if snr is not None:
            snr = np.asarray(getattr(snr, "value", snr), float).reshape(-1)
            if snr.shape != (n,):
                raise ValueError(f"snr has {snr.size} values; spectra has {n} rows")
        if spectra_err is None:  # pixel errors from the S/N: flux / (S/N)
            spectra_err = np.abs(spec) / np.where(np.isfinite(snr) & (snr > 0), snr, np.inf)[:, None].astype(np.float32)
        err = as_2d_float(spectra_err, "spectra_err", dtype=None)
        if self.pixel_mask is not None and err.shape[1] == self.spectrum_length:
            err = err[:, np.asarray(self.pixel_mask, dtype=bool)]
        if err.shape != spec.shape:
            raise ValueError(f"spectra_err has shape {err.shape}; the spectra the network sees have {spec.shape}")
        return err, (spectra_snr(spec, err) if snr is None else snr)

    def post_training_checklist_child(self):
        super().post_training_checklist_child()
        write_plugin_config(self.fullfilepath, self._plugin_config())

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
