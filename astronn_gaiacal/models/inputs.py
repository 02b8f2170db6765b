"""Input checks and layouts of the joint models, shared by a single model and a deep ensemble.

A joint model takes, per star, ``[spectrum | magnitude | offset features]``
(the *full layout*).  The functions here check arrays and split or build that
layout; the ``model`` they take is anything with ``spectrum_length`` and
``n_features`` (``pixel_mask`` too for :func:`check_spectra`), a
:class:`~astronn_gaiacal.models.GaiaCalBCNNBase` or a
:class:`~astronn_gaiacal.models.DeepEnsemble`.  None of them needs TensorFlow.

Large arrays are checked and normalised in blocks of :data:`BLOCK_ROWS` rows, on
the array as given: float32 spectra stay float32, with no full-size float64
temporaries.
"""
import numpy as np
from astropy import units as u

from ..constants import MAGIC_NUMBER, is_missing

__all__ = ["BLOCK_ROWS", "NotTrainedError", "as_1d_float", "as_2d_float", "check_spectra", "column_moments",
           "feature_matrix", "feature_ranges", "normalisation_moments", "normalised_columns", "refit_inputs",
           "spectra_and_magnitude", "split_layout", "training_features", "training_labels", "training_magnitude",
           "unpack_full_layout"]

#: Rows per block where a whole-array temporary would be as large as the spectra.
BLOCK_ROWS = 4096


class NotTrainedError(AttributeError):
    """The model has no trained network yet (call ``fit`` or ``load_folder``)."""


def _model_name(model):
    return type(model).__name__


def as_2d_float(x, name, dtype=np.float64):
    """``x`` as a 2-d ``(n_stars, n_columns)`` float array.

    Parameters
    ----------
    x : array_like
        1-d (one star), 2-d, or 3-d with a trailing axis of 1 (astroNN's layout).
    name : str
        Used in error messages.
    dtype : dtype or None
        ``None`` keeps float32/float64 input as it is (no copy).

    Raises
    ------
    TypeError
        ``x`` is a Quantity.
    ValueError
        ``x`` cannot be read as ``(n_stars, n_columns)``.
    """
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


def as_1d_float(x, name, n, unit=None):
    """``x`` as a float64 array of ``n`` values (a scalar is broadcast).

    Parameters
    ----------
    x : array_like or Quantity
    name : str
    n : int
        Number of stars.
    unit : Unit, optional
        Unit a Quantity is converted to (the values are then in it); without
        one, a Quantity is refused.

    Raises
    ------
    TypeError, astropy.units.UnitTypeError
        A Quantity where none is allowed, or in the wrong unit.
    ValueError
        Not ``n`` values.
    """
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


def column_moments(a, rows=None):
    """Float64 mean and standard deviation of each column of ``a``, over blocks of rows (no full-size temporaries).

    ``rows`` defaults to :data:`BLOCK_ROWS`.
    """
    rows = BLOCK_ROWS if rows is None else int(rows)
    n = a.shape[0]
    mean = np.zeros(a.shape[1])
    for start in range(0, n, rows):
        mean += np.sum(a[start:start + rows], axis=0, dtype=np.float64)
    mean /= max(n, 1)
    ss = np.zeros(a.shape[1])
    for start in range(0, n, rows):
        ss += np.sum(np.square(a[start:start + rows] - mean), axis=0)
    return mean, np.sqrt(ss / max(n, 1))


def normalised_columns(a, mean, std):
    """``(a - mean) / std`` as float32, computed in float64 one block of :data:`BLOCK_ROWS` rows at a time."""
    out = np.empty(a.shape, np.float32)
    for start in range(0, a.shape[0], BLOCK_ROWS):
        out[start:start + BLOCK_ROWS] = (a[start:start + BLOCK_ROWS] - mean) / std
    return out


def check_spectra(model, spectra, name="spectra", dtype=np.float64):
    """Spectra checked against ``model`` (pixels per star, no NaN/-9999) and cut to its ``pixel_mask``.

    Parameters
    ----------
    model : GaiaCalBCNNBase
        Gives ``spectrum_length`` (``None``: any) and ``pixel_mask``.
    spectra : array_like, shape (N, spectrum_length)
    name : str
    dtype : dtype or None
        As :func:`as_2d_float` (``None`` keeps float32/float64 input as it is).

    Raises
    ------
    ValueError
        Wrong number of pixels, or NaN/-9999 pixels (with the number of stars
        and the first row).
    """
    spectra = as_2d_float(spectra, name, dtype)
    if model.spectrum_length is not None and spectra.shape[1] != model.spectrum_length:
        raise ValueError(
            f"{name} has {spectra.shape[1]} pixels per star; {_model_name(model)} expects {model.spectrum_length}"
        )
    n_bad, bad_rows = 0, []
    for start in range(0, spectra.shape[0], BLOCK_ROWS):
        bad = is_missing(spectra[start:start + BLOCK_ROWS])
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
    if model.pixel_mask is not None:
        spectra = spectra[:, np.asarray(model.pixel_mask, dtype=bool)]
    return spectra


def feature_matrix(features, names):
    """Offset features as an ``(N, F)`` float64 array in the order of ``names``.

    Parameters
    ----------
    features : ndarray, astropy Table, pandas DataFrame or dict
        An ``(N, F)`` array already in that order, or a table-like object with
        columns named as ``names`` (a Teff Quantity is taken in K, masked
        entries become NaN).
    names : sequence of str

    Raises
    ------
    KeyError
        A named column is missing.
    ValueError
        An array with another number of columns.
    """
    names = list(names)
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
    arr = as_2d_float(features, "offset_features")
    if arr.shape[1] != len(names):
        raise ValueError(f"offset_features has {arr.shape[1]} columns; the model needs {len(names)}: {names}")
    return arr


def split_layout(model, input_data):
    """Spectra and magnitudes (``None`` if absent) from spectra-only, spectra + magnitude or full-layout input.

    Views of ``input_data``: float32 or float64 input is not copied.

    Raises
    ------
    NotTrainedError
        ``model`` has no ``spectrum_length`` yet.
    ValueError
        A number of columns that is none of the three layouts.
    """
    x = as_2d_float(input_data, "input_data", dtype=None)
    length = model.spectrum_length
    if length is None:
        raise NotTrainedError(f"{_model_name(model)} has no spectrum_length yet")
    widths = {length: "spectra", length + 1: "spectra+magnitude", length + 1 + model.n_features: "full"}
    if x.shape[1] not in widths:
        raise ValueError(
            f"input_data has {x.shape[1]} columns; {_model_name(model)} takes {length} (spectra), "
            f"{length + 1} (spectra + magnitude) or {length + 1 + model.n_features} (full layout)"
        )
    spectra = x[:, :length]
    mag = x[:, length] if x.shape[1] > length else None
    return spectra, mag


def spectra_and_magnitude(model, input_data, magnitude=None):
    """Spectra and a float64 magnitude per star, the magnitudes given or taken from the layout.

    Parameters
    ----------
    model : GaiaCalBCNNBase or DeepEnsemble
    input_data : ndarray
        Spectra, spectra + magnitude, or the full layout (:func:`split_layout`).
    magnitude : array_like or Quantity [mag], optional
        Overrides the layout's magnitude column.

    Raises
    ------
    ValueError
        Spectra-only input without ``magnitude``.
    """
    spectra, mag_from_layout = split_layout(model, input_data)
    if magnitude is None:
        if mag_from_layout is None:
            raise ValueError("magnitude is required when input_data holds spectra only")
        magnitude = mag_from_layout
    return spectra, as_1d_float(magnitude, "magnitude", spectra.shape[0], unit=u.mag)


def refit_inputs(model, input_data, parallax, parallax_error, magnitude=None):
    """The stars with a Gaia parallax, for a zero-point refit.

    Returns
    -------
    has : ndarray of bool, shape (N,)
        Which of the ``N`` stars have a parallax (not NaN/-9999).
    spectra, magnitude, parallax, parallax_error : ndarray
        Those stars' values (parallaxes in mas).

    Raises
    ------
    ValueError
        Fewer than 3 stars with a parallax, or arrays of the wrong length.
    """
    spectra, mag = spectra_and_magnitude(model, input_data, magnitude)
    n = spectra.shape[0]
    plx = as_1d_float(parallax, "parallax", n, unit=u.mas)
    plx_err = as_1d_float(parallax_error, "parallax_error", n, unit=u.mas)
    has = ~is_missing(plx)
    if has.sum() < 3:
        raise ValueError(f"parallax has {int(has.sum())} valid value(s); at least 3 are needed")
    if not has.all():
        spectra, mag, plx, plx_err = spectra[has], mag[has], plx[has], plx_err[has]
    return has, spectra, mag, plx, plx_err


# ---------------------------------------------------------------- training inputs
def unpack_full_layout(model, full):
    """Spectra, magnitudes and offset features (``None`` without features) of a full-layout training array.

    Raises
    ------
    ValueError
        ``model`` has no ``spectrum_length`` yet, or ``full`` is not ``spectrum_length + 1 + n_features`` wide.
    """
    if model.spectrum_length is None:
        raise ValueError("give magnitude (the full-layout call needs a known spectrum_length)")
    full = as_2d_float(full, "spectra")
    length, expected = model.spectrum_length, model.spectrum_length + 1 + model.n_features
    if full.shape[1] != expected:
        raise ValueError(
            f"without magnitude, spectra must be the full layout with {expected} columns; got {full.shape[1]}"
        )
    return full[:, :length], full[:, length], (full[:, length + 1:] if model.n_features else None)


def training_magnitude(magnitude, n):
    """Magnitudes of ``n`` training stars (float64, mag); NaN/-9999 refused."""
    mag = as_1d_float(magnitude, "magnitude", n, unit=u.mag)
    if is_missing(mag).any():
        raise ValueError(f"magnitude has {int(is_missing(mag).sum())} NaN/-9999 value(s); remove those stars")
    return mag


def training_labels(parallax, parallax_error, n):
    """Labels ``(n, 1)`` (parallax, :data:`~astronn_gaiacal.constants.MAGIC_NUMBER` where missing) and their errors.

    Stars without a parallax get error 0 (masked in the likelihood).

    Raises
    ------
    ValueError
        No valid parallax, or a non-positive or missing error where a parallax is given.
    """
    plx = as_1d_float(parallax, "parallax", n, unit=u.mas)
    plx_err = as_1d_float(parallax_error, "parallax_error", n, unit=u.mas)
    has_plx = ~is_missing(plx)
    if not has_plx.any():
        raise ValueError("parallax has no valid value (all NaN/-9999)")
    bad_err = has_plx & (is_missing(plx_err) | (plx_err <= 0))
    if bad_err.any():
        raise ValueError(
            f"parallax_error must be positive and finite where parallax is given; {int(bad_err.sum())} star(s) are not"
        )
    return np.where(has_plx, plx, MAGIC_NUMBER)[:, None], np.where(has_plx, plx_err, 0.0)[:, None]


def training_features(model, offset_features, n):
    """Offset features ``(n, n_features)`` of the training stars (``(n, 0)`` without a multivariate offset).

    Raises
    ------
    ValueError
        Features missing for a multivariate model, given to another, of the
        wrong length, or with NaN/-9999 entries.
    """
    if model.offset != "multivariate":
        if offset_features is not None:
            raise ValueError(f"offset={model.offset!r} takes no offset_features")
        return np.empty((n, 0))
    if offset_features is None:
        raise ValueError(f"offset='multivariate' needs offset_features {model.offset_features}")
    feats = feature_matrix(offset_features, model.offset_features)
    if feats.shape[0] != n:
        raise ValueError(f"offset_features has {feats.shape[0]} rows; spectra has {n}")
    if is_missing(feats).any():
        bad = np.unique(np.nonzero(is_missing(feats))[1])
        raise ValueError(
            f"offset_features contain NaN/-9999 in column(s) {[model.offset_features[i] for i in bad]}; "
            f"remove those stars from the training set"
        )
    return feats


def normalisation_moments(spectra, magnitude, features, labels, standardize=False):
    """Input mean and scale of the full layout, and the parallax scale, as the joint models normalise them.

    Spectra are centred (and divided by their standard deviation with
    ``standardize``), magnitudes centred, features standardised; constant
    columns keep a scale of 1.

    Returns
    -------
    mean, std : ndarray, shape (n_pixels + 1 + n_features,)
    label_std : float
        Standard deviation of the valid parallaxes (1 if it is 0 or undefined).
    """
    spec_mean, spec_std = column_moments(spectra)
    spec_std = spec_std if standardize else np.ones(spectra.shape[1])
    spec_std = np.where(spec_std > 0, spec_std, 1.0)
    feat_mean = features.mean(axis=0) if features.shape[1] else np.empty(0)
    feat_std = features.std(axis=0) if features.shape[1] else np.empty(0)
    feat_std = np.where(feat_std > 0, feat_std, 1.0)
    mean = np.concatenate([spec_mean, [magnitude.mean()], feat_mean])
    std = np.concatenate([spec_std, [1.0], feat_std])
    valid = ~is_missing(labels)
    label_std = float(np.std(labels[valid])) if valid.sum() > 1 else 1.0
    return mean, std, (label_std if label_std > 0 else 1.0)


def feature_ranges(features, names):
    """``{name: [min, max]}`` of each feature column (the training ranges saved with a model)."""
    return {n: [float(lo), float(hi)] for n, lo, hi in zip(names, features.min(axis=0), features.max(axis=0))}
