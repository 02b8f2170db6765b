"""Per-star quality flags of the inputs: what the tool warns about and flags (docs/policy.rst).

Structurally bad input is refused by the callers (exit code 2 on the command
line); the functions here find *physically implausible* stars, which are kept,
flagged with one boolean column per reason, and counted in the summaries:

========================  ==================================================================
``flag_spectrum``         not a usable continuum-normalised spectrum: a missing pixel (NaN,
                          inf, -9999), all zero, the median of the pixels outside
                          :data:`NORMALISED_MEDIAN_RANGE`, or more than
                          :data:`MAX_OUTLIER_FRACTION` of the pixels outside
                          :data:`NORMALISED_PIXEL_RANGE`
``flag_magnitude``        magnitude outside :data:`MAGNITUDE_RANGE` (e.g. the 99.99 sentinel)
``out_of_range``          an offset feature outside the model's training range (stored in the
                          model folder as ``feature_ranges``): an extrapolation
``flag_duplicate``        a repeated ``source_id`` (or ``apogee_id``): every copy after the first
``flag_luminosity``       a predicted fakemag in a range where the model's luminosity check on
                          held-out Gaia parallaxes found a bias (stored in the model folder;
                          :mod:`~astronn_gaiacal.models.luminosity_check`): distance biased
========================  ==================================================================

Examples
--------
>>> import numpy as np
>>> from astronn_gaiacal.io.quality import magnitude_flags, spectrum_flags
>>> spectrum_flags(np.array([[1.0, 0.98, 1.01], [0.0, 0.0, 0.0], [900.0, 1100.0, 1000.0], [1.0, np.nan, 1.0]]))
array([False,  True,  True,  True])
>>> magnitude_flags(np.array([9.5, 99.99, -9999.0]))      # -9999 is missing, not implausible
array([False,  True, False])
"""
import numpy as np

from ..constants import is_missing

__all__ = [
    "FLAG_COLUMNS",
    "MAGNITUDE_RANGE",
    "MAX_OUTLIER_FRACTION",
    "NORMALISED_MEDIAN_RANGE",
    "NORMALISED_PIXEL_RANGE",
    "PARALLAX_ERROR_RANGE_MAS",
    "PARALLAX_RANGE_MAS",
    "catalogue_summary",
    "duplicate_flags",
    "feature_range_flags",
    "flag_counts",
    "magnitude_flags",
    "parallax_flags",
    "parallax_unit_problem",
    "row_duplicates",
    "spectrum_flags",
]

#: Median of the finite pixels of a continuum-normalised spectrum.
NORMALISED_MEDIAN_RANGE = (0.5, 1.5)
#: Range of an ordinary continuum-normalised pixel (absorption to slight excess).
NORMALISED_PIXEL_RANGE = (-0.1, 2.0)
#: Largest fraction of finite pixels outside :data:`NORMALISED_PIXEL_RANGE` of an unflagged spectrum.
MAX_OUTLIER_FRACTION = 0.1
#: Apparent magnitudes a star in the catalogues can have (99.99 and similar sentinels fall outside).
MAGNITUDE_RANGE = (-2.0, 25.0)
#: Median Gaia parallax error (mas) a table in mas can have: Gaia's errors lie between ~0.01 and ~2 mas;
#: a median outside this range means the column is in another unit (arcsec, uas) without saying so.
PARALLAX_ERROR_RANGE_MAS = (1e-3, 20.0)
#: Largest absolute parallax (mas) a star can have: the nearest star, Proxima Centauri, has 768 mas.
PARALLAX_RANGE_MAS = 1000.0
#: The flag columns, with what each means (the summaries count them under these names).
FLAG_COLUMNS = {
    "flag_spectrum": "not a usable continuum-normalised spectrum (missing pixels, all zero, or flux far from 1)",
    "flag_magnitude": f"magnitude outside {MAGNITUDE_RANGE[0]:g}..{MAGNITUDE_RANGE[1]:g} (e.g. a 99.99 sentinel)",
    "out_of_range": "an offset feature outside the model's training range (extrapolated zero-point)",
    "flag_duplicate": "a repeated star (source_id or apogee_id seen on an earlier row)",
    "flag_luminosity": "predicted fakemag where the model's luminosity check against Gaia found a bias",
    "flag_parallax": f"a Gaia parallax that cannot be used (its error missing or not positive, or |parallax| above "
                     f"{PARALLAX_RANGE_MAS:g} mas); left out of the weighting",
}


def spectrum_flags(spectra):
    """True for spectra that are not continuum-normalised (see the module table).

    Parameters
    ----------
    spectra : array_like, shape (N, L)
        A spectrum with a missing pixel (NaN, inf, -9999) is flagged: the network has no value for it.

    Returns
    -------
    ndarray of bool, shape (N,)
    """
    x = np.asarray(spectra, dtype=np.float64)
    x = np.where(is_missing(x) | ~np.isfinite(x), np.nan, x)
    finite = np.isfinite(x)
    n = finite.sum(axis=1)
    with np.errstate(all="ignore"):
        median = np.nanmedian(np.where(n[:, None] > 0, x, 0.0), axis=1)
        outside = ((x < NORMALISED_PIXEL_RANGE[0]) | (x > NORMALISED_PIXEL_RANGE[1])) & finite
        frac = outside.sum(axis=1) / np.maximum(n, 1)
    zero = np.all(np.where(finite, x == 0.0, True), axis=1)
    return (n < x.shape[1]) | zero | ~((median >= NORMALISED_MEDIAN_RANGE[0]) & (median <= NORMALISED_MEDIAN_RANGE[1])) \
        | (frac > MAX_OUTLIER_FRACTION)


def magnitude_flags(mag):
    """True where a present magnitude lies outside :data:`MAGNITUDE_RANGE` (missing values are not flagged)."""
    m = np.asarray(mag, dtype=np.float64)
    present = ~is_missing(m) & np.isfinite(m)
    return present & ((m < MAGNITUDE_RANGE[0]) | (m > MAGNITUDE_RANGE[1]))


def parallax_flags(parallax, parallax_error):
    """True where a Gaia parallax is present but unusable (:data:`FLAG_COLUMNS`: ``flag_parallax``).

    Examples
    --------
    >>> parallax_flags([1.0, 1.0, 1.0, 2e6, -9999.0], [0.05, 0.0, -0.02, 0.05, 0.05])
    array([False,  True,  True,  True, False])
    """
    plx = np.asarray(parallax, dtype=np.float64)
    err = np.asarray(parallax_error, dtype=np.float64)
    present = ~is_missing(plx) & np.isfinite(plx)
    with np.errstate(invalid="ignore"):
        err_ok = ~is_missing(err) & np.isfinite(err) & (err > 0)
        return present & (~err_ok | (np.abs(plx) > PARALLAX_RANGE_MAS))


def feature_range_flags(features, ranges):
    """True where a present feature lies outside its training range.

    Parameters
    ----------
    features : mapping of str to array_like
        The offset features (missing entries, NaN/-9999, are not flagged: they have no zero-point).
    ranges : mapping of str to (low, high) or None
        The model's ``feature_ranges``; ``None`` (a folder without stored ranges) flags nothing.

    Returns
    -------
    ndarray of bool
    """
    flag = None
    for name, values in features.items():
        v = np.asarray(values, dtype=np.float64)
        if flag is None:
            flag = np.zeros(v.shape, bool)
        if not ranges or name not in ranges:
            continue
        lo, hi = ranges[name]
        present = ~is_missing(v) & np.isfinite(v)
        flag |= present & ((v < lo) | (v > hi))
    return np.zeros(0, bool) if flag is None else flag


def duplicate_flags(ids):
    """True for every row whose id already appeared on an earlier row (missing ids: -9999, 0, '' never count)."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "US":
        valid = np.char.strip(ids.astype(str)) != ""
    else:
        valid = ~is_missing(ids.astype(np.float64)) & (ids != 0)
    flag = np.zeros(len(ids), bool)
    idx = np.flatnonzero(valid)
    _, first = np.unique(ids[idx], return_index=True)
    dup = np.ones(idx.size, bool)
    dup[first] = False
    flag[idx[dup]] = True
    return flag


def parallax_unit_problem(parallax_error, column="parallax_error"):
    """A one-line reason when the parallax errors cannot be in mas, else None.

    Parameters
    ----------
    parallax_error : array_like
        Plain numbers taken to be mas (a column with a unit is converted before).
    column : str
        Name used in the message.
    """
    e = np.asarray(parallax_error, dtype=np.float64)
    e = e[~is_missing(e) & np.isfinite(e) & (e > 0)]
    if e.size == 0:
        return None
    median = float(np.median(e))
    lo, hi = PARALLAX_ERROR_RANGE_MAS
    if lo <= median <= hi:
        return None
    guess = "arcsec" if median < lo else "uas"
    return (f"column '{column}' has a median of {median:.3g}, implausible for Gaia parallax errors in mas "
            f"({lo:g}..{hi:g}): it looks like {guess}; give the column a unit or convert it to mas")


def flag_counts(table):
    """``{flag column: number of flagged rows}`` for the flag columns present in ``table``."""
    names = getattr(table, "colnames", None) or list(table)
    return {name: int(np.asarray(table[name], bool).sum()) for name in FLAG_COLUMNS if name in names}


def row_duplicates(ds):
    """True for rows repeating an earlier star: the same ``source_id`` or ``apogee_id``, or an identical spectrum."""
    flag = np.zeros(len(ds), bool)
    for name in ("source_id", "apogee_id"):
        if name in ds:
            flag |= duplicate_flags(ds[name])
    if "spectra" in ds and len(ds):
        spectra = np.ascontiguousarray(ds["spectra"])
        seen = {}
        for i in range(len(spectra)):
            key = hash(spectra[i].tobytes())
            if key in seen and np.array_equal(spectra[seen[key]], spectra[i]):
                flag[i] = True
            else:
                seen.setdefault(key, i)
    return flag


def catalogue_summary(catalogue):
    """Counts of a catalogue: stars, stars with an NN distance, median fractional error, and each flag."""
    dist, dist_err = catalogue["dist"].value, catalogue["dist_error"].value
    has_dist = ~is_missing(dist) & np.isfinite(dist)
    ok = has_dist & ~is_missing(dist_err) & np.isfinite(dist_err)
    return {
        "n_stars": len(catalogue), "n_with_distance": int(has_dist.sum()),
        "median_fractional_dist_error": float(np.median(dist_err[ok] / dist[ok])) if ok.any() else None,
        "flags": flag_counts(catalogue),
    }
