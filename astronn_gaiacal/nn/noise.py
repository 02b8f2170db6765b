r"""Training spectra degraded to lower S/N, so that the network learns the S/N it is applied at.

A network trained only on high-S/N spectra (the paper's S/N > 200) predicts
luminosities that are too low on noisier spectra, while its predicted
uncertainty hardly grows (docs/calibration.rst, "Training at the S/N of
application").  :class:`TrainingNoise` adds, at every
training step, Gaussian noise that brings each star to an S/N :math:`t` drawn
log-uniformly between a floor and its own S/N :math:`s`, with the noise law
of :func:`~astronn_gaiacal.models.calibration.degrade_spectra`: pixel standard
deviation :math:`e\sqrt{(s/t)^2 - 1}` for a pixel error :math:`e`, nothing on
masked pixels (error not finite or not below 1).

The unit normal deviates come from a bank of ``bank_rows`` rows drawn once: a
star's noise is :math:`z_a\cos\theta + z_b\sin\theta` for two random rows and
a random angle, exactly unit normal and independent between pixels, at the
cost of two row copies instead of a normal draw per pixel (which would cost
a third of a CPU training step).
"""
import numpy as np

from .._compat import tf

__all__ = ["NOISE_BANK_ROWS", "TrainingNoise", "TrainingNoiseWarning", "noise_errors", "spectra_snr", "usable_errors"]

#: Rows of unit normal deviates the training noise combines.
NOISE_BANK_ROWS = 512


class TrainingNoiseWarning(UserWarning):
    """A network is trained without the S/N degradation it is configured for (no spectra errors)."""


def spectra_snr(spectra, spectra_err):
    """Each star's S/N: the median over its unmasked pixels (finite error below 1) of flux / error.

    Examples
    --------
    >>> import numpy as np
    >>> spectra_snr(np.ones((2, 4)), np.array([[0.01] * 4, [0.02, 0.02, 0.02, 9.0]]))
    array([100.,  50.])
    """
    flux = np.abs(np.asarray(spectra, float))
    err = np.asarray(spectra_err, float)
    good = np.isfinite(err) & (err > 0) & (err < 1)
    ratio = np.where(good, flux / np.where(good, err, 1.0), np.nan)
    with np.errstate(all="ignore"):
        return np.nanmedian(ratio, axis=1) if ratio.shape[1] else np.full(ratio.shape[0], np.nan)


def usable_errors(spectra_err):
    """Pixel errors (float32) with the masked pixels (error not finite or not below 1) set to 0: no noise there."""
    err = np.asarray(spectra_err, np.float32)
    return np.where(np.isfinite(err) & (err < 1), err, np.float32(0.0))


def noise_errors(spectra_err, scale=None):
    """Pixel errors as :class:`TrainingNoise` reads them: :func:`usable_errors`, divided by ``scale``, float16."""
    err = usable_errors(spectra_err)
    if scale is not None:
        err = err / np.asarray(scale, np.float32)
    return err.astype(np.float16)


class TrainingNoise:
    """Per-step noise for the spectra of training batches (see the module docstring).

    Parameters
    ----------
    errors : ndarray, shape (N, P)
        Pixel errors of the training stars in the network's input units (:func:`noise_errors`).
    snr : ndarray, shape (N,)
        The stars' own S/N (not finite: no noise for that star).
    floor : float
        Lowest S/N a star is degraded to.
    seed : int
        Seed of the deviate bank.
    bank_rows : int
    columns : int, optional
        Columns of the network's input rows (default ``P``): the spectrum first, then
        columns the noise leaves alone (magnitude, features).
    """

    def __init__(self, errors, snr, floor, seed=0, bank_rows=NOISE_BANK_ROWS, columns=None):
        errors = np.asarray(errors)
        snr = np.asarray(snr, float)
        if errors.ndim != 2 or snr.shape != (errors.shape[0],):
            raise ValueError(f"errors must be (N, P) and snr (N,), got {errors.shape} and {snr.shape}")
        if not np.isfinite(floor) or floor <= 0:
            raise ValueError(f"the noise floor must be a positive S/N, got {floor!r}")
        if int(bank_rows) < 2:
            raise ValueError(f"bank_rows must be at least 2, got {bank_rows!r}")
        self.floor = float(floor)
        self.n_pixels = int(errors.shape[1])
        self.columns = self.n_pixels if columns is None else int(columns)
        if self.columns < self.n_pixels:
            raise ValueError(f"columns ({self.columns}) must be at least the {self.n_pixels} pixels")
        padded = np.zeros((errors.shape[0], self.columns), np.float16)  # no noise on the trailing columns
        padded[:, : self.n_pixels] = errors
        self._errors = tf.constant(padded)
        snr = np.where(np.isfinite(snr) & (snr > 0), snr, 0.0)  # 0: at or below any floor, kept as it is
        self._snr = tf.constant(snr.astype(np.float32))
        bank = np.random.default_rng(seed).standard_normal((int(bank_rows), self.columns), dtype=np.float32)
        self._bank = tf.constant(bank)

    def __call__(self, x, idx, key):
        """``x`` (B, columns, 1) with noise on its first ``n_pixels`` columns for the stars ``idx``; ``key``: int64 seed."""
        seeds = tf.stack([tf.cast(key, tf.int64), tf.constant(0, tf.int64)])
        draws = tf.random.stateless_uniform(tf.stack([tf.size(idx), 4]), seed=seeds)
        snr = tf.gather(self._snr, idx)
        above = snr > self.floor
        ratio = tf.where(above, snr / self.floor, tf.ones_like(snr))
        target = self.floor * tf.pow(ratio, draws[:, 0])
        factor = tf.where(above, tf.sqrt(tf.maximum(tf.square(snr / target) - 1.0, 0.0)), tf.zeros_like(snr))
        n_rows = self._bank.shape[0]
        first = tf.cast(draws[:, 1] * n_rows, tf.int32)
        second = (first + 1 + tf.cast(draws[:, 2] * (n_rows - 1), tf.int32)) % n_rows  # never the first
        theta = 2.0 * np.pi * draws[:, 3]
        z = (tf.gather(self._bank, first) * tf.cos(theta)[:, None]
             + tf.gather(self._bank, second) * tf.sin(theta)[:, None])
        noise = z * tf.cast(tf.gather(self._errors, idx), tf.float32) * factor[:, None]
        return x + noise[:, :, None]
