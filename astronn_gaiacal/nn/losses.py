r"""Likelihoods for training on Gaia catalogue parallaxes.

All losses take packed tensors, so they fit Keras' ``loss(y_true, y_pred)``
signature and serialise by name:

* ``y_true[..., 0]`` the Gaia parallax :math:`\varpi`, ``y_true[..., 1]`` its
  catalogue error :math:`\sigma_\varpi` (both in the model's label units);
* ``y_pred[..., 0]`` the predicted parallax :math:`\hat\varpi`,
  ``y_pred[..., 1]`` the predictive log-variance :math:`s_{\rm pred}`.

Entries whose :math:`\varpi` is the magic number -9999 or NaN contribute zero,
and the batch is rescaled by :math:`N/N_{\rm valid}` (astroNN's correction
term, applied over the batch) so masked stars do not lower the mean loss.

========================  ==================================================================
name                      per-star loss
========================  ==================================================================
``gaia_gaussian_nll``     paper eqs. 3-5: :math:`\tfrac12 r^2 e^{-s} + \tfrac12 s`,
                          :math:`s = \ln(\sigma_\varpi^2 + e^{s_{\rm pred}})` (default)
``gaia_student_t_nll``    robust to outliers (binaries, mis-matches): Student-t with fixed
                          :math:`\nu`, :math:`\tfrac12 s + \tfrac{\nu+1}{2}\ln(1+r^2e^{-s}/\nu)`
``gaussian_nll``          plain heteroscedastic Gaussian, ignores :math:`\sigma_\varpi`:
                          :math:`s = s_{\rm pred}`
========================  ==================================================================

with :math:`r = \hat\varpi - \varpi`.  Negative parallaxes are valid data.
"""
from .._compat import keras, tf
from ..constants import DEFAULT_STUDENT_T_NU, MAGIC_NUMBER


def _unpack(y_true, y_pred):
    y_true = tf.convert_to_tensor(y_true)
    y_pred = tf.cast(tf.convert_to_tensor(y_pred), y_true.dtype)
    parallax, parallax_error = y_true[..., 0], y_true[..., 1]
    prediction, pred_logvar = y_pred[..., 0], y_pred[..., 1]
    missing = tf.logical_or(tf.equal(parallax, MAGIC_NUMBER), tf.math.is_nan(parallax))
    safe = tf.logical_not(missing)
    residual = tf.where(safe, prediction - parallax, tf.zeros_like(parallax))
    parallax_error = tf.where(safe, parallax_error, tf.zeros_like(parallax_error))
    return residual, parallax_error, pred_logvar, safe


def _masked(per_star, valid):
    """Zero masked stars and rescale by N/N_valid (0 if no star is valid)."""
    per_star = tf.where(valid, per_star, tf.zeros_like(per_star))
    n_total = tf.cast(tf.size(valid), per_star.dtype)
    n_valid = tf.reduce_sum(tf.cast(valid, per_star.dtype))
    return per_star * tf.math.divide_no_nan(n_total, n_valid)


def _total_logvar(pred_logvar, parallax_error):
    # ln(sigma^2 + e^s), computed stably
    return tf.math.reduce_logsumexp(
        tf.stack([pred_logvar, 2.0 * tf.math.log(tf.abs(parallax_error))], axis=0), axis=0
    )


def gaia_gaussian_nll(y_true, y_pred):
    """Gaussian likelihood with the Gaia error, the paper's eqs. 3-5 (per star)."""
    residual, parallax_error, pred_logvar, valid = _unpack(y_true, y_pred)
    s = _total_logvar(pred_logvar, parallax_error)
    return _masked(0.5 * tf.square(residual) * tf.exp(-s) + 0.5 * s, valid)


def gaia_student_t_nll(y_true, y_pred, nu=DEFAULT_STUDENT_T_NU):
    """Student-t likelihood with the Gaia error and fixed degrees of freedom ``nu``.

    Constant terms are dropped; as ``nu`` goes to infinity it becomes
    :func:`gaia_gaussian_nll`.
    """
    residual, parallax_error, pred_logvar, valid = _unpack(y_true, y_pred)
    s = _total_logvar(pred_logvar, parallax_error)
    nu = tf.cast(nu, s.dtype)
    per_star = 0.5 * s + 0.5 * (nu + 1.0) * tf.math.log1p(tf.square(residual) * tf.exp(-s) / nu)
    return _masked(per_star, valid)


def gaussian_nll(y_true, y_pred):
    """Plain heteroscedastic Gaussian likelihood; the Gaia error is ignored."""
    residual, _, pred_logvar, valid = _unpack(y_true, y_pred)
    return _masked(0.5 * tf.square(residual) * tf.exp(-pred_logvar) + 0.5 * pred_logvar, valid)


class _PackedLoss(keras.losses.Loss):
    fn = None

    def __init__(self, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name or self.fn.__name__, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred)


class GaiaGaussianNLL(_PackedLoss):
    """Keras loss object for :func:`gaia_gaussian_nll` (the default)."""

    fn = staticmethod(gaia_gaussian_nll)


class GaussianNLL(_PackedLoss):
    """Keras loss object for :func:`gaussian_nll`."""

    fn = staticmethod(gaussian_nll)


class GaiaStudentTNLL(_PackedLoss):
    """Keras loss object for :func:`gaia_student_t_nll` with fixed ``nu``."""

    fn = staticmethod(gaia_student_t_nll)

    def __init__(self, nu=DEFAULT_STUDENT_T_NU, name=None, **kwargs):
        if not float(nu) > 0:
            raise ValueError(f"nu must be positive, got {nu!r}")
        self.nu = float(nu)
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return gaia_student_t_nll(y_true, y_pred, nu=self.nu)

    def get_config(self):
        config = super().get_config()
        config.update(nu=self.nu)
        return config


#: loss name -> Keras loss class
LOSS_CLASSES = {
    "gaia_gaussian_nll": GaiaGaussianNLL,
    "gaia_student_t_nll": GaiaStudentTNLL,
    "gaussian_nll": GaussianNLL,
}
DEFAULT_LOSS = "gaia_gaussian_nll"


def loss_from_name(name, **kwargs):
    """Build a loss object from its registered name (e.g. ``'gaia_student_t_nll'``)."""
    if name not in LOSS_CLASSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSS_CLASSES)}")
    return LOSS_CLASSES[name](**kwargs)
