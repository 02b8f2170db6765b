r"""The paper's selection of training and test stars, with a per-cut report, and the seeded split.

Leung & Bovy (2019, Section 2 and their data-reduction notebook) keep APOGEE-Gaia
stars with

* a valid spectrum (not all zero or non-finite), a valid 2MASS :math:`K_s` and a valid extinction;
* SNR > 200 for the training set, SNR < 200 for the test set;
* a Gaia parallax with :math:`\sigma_\varpi < 0.1` mas;
* ``visibility_periods_used`` :math:`\ge 11`;
* ``STARFLAG == 0`` and ``VSCATTER`` < 1 km/s;
* :math:`\log_{10} L_{K_s}/L_\odot > 0` or :math:`\varpi < 0`, with
  :math:`L` from the fakemag of the extinction-corrected :math:`K_s` and the
  Gaia parallax (negative parallaxes are kept: they carry information).

:func:`paper_selection` applies the cuts in this order and reports how many
stars each one removed among those left by the previous ones, so the counts
and the stars kept add up to N.  Every threshold is a parameter (default from
:mod:`astronn_gaiacal.constants`); ``None`` switches a cut off.

Examples
--------
>>> import numpy as np
>>> from astronn_gaiacal.io.dataset import Dataset
>>> from astronn_gaiacal.sources.selection import paper_selection
>>> ds = Dataset(columns={"mag": [9.0, 9.0, 9.0], "mag_ext": [0.1, 0.1, 0.1], "snr": [250.0, 150.0, 300.0],
...     "parallax": [0.5, 0.5, 0.5], "parallax_error": [0.05, 0.05, 0.2],
...     "visibility_periods_used": [12, 12, 12], "starflag": [0, 0, 0], "vscatter": [0.1, 0.1, 0.1]})
>>> sel = paper_selection(ds, sample="train", require_spectrum=False)
>>> sel.mask
array([ True, False, False])
>>> sel.report.removed["snr"], sel.report.removed["parallax_error"], sel.report.n_selected
(1, 1, 1)
"""
import dataclasses
from collections.abc import Mapping

import numpy as np
from astropy import units as u

from ..constants import (
    PAPER_MAX_PARALLAX_ERROR_MAS,
    PAPER_MAX_VSCATTER_KMS,
    PAPER_MIN_LOG_LUMINOSITY,
    PAPER_MIN_VISIBILITY_PERIODS,
    PAPER_SNR_SPLIT,
    PAPER_VALIDATION_FRACTION,
    SOLAR_ABSMAG_KS,
    is_missing,
)
from ..io.dataset import Dataset, MissingColumnError, read_dataset

__all__ = ["SelectionReport", "Selection", "paper_selection", "log_luminosity", "train_validation_split"]

#: Names of the cuts, in the order they are applied.
CUTS = ("spectrum", "mag", "extinction", "snr", "parallax", "parallax_error", "visibility_periods",
        "starflag", "vscatter", "luminosity")


@dataclasses.dataclass
class SelectionReport:
    """How many stars each cut removed.

    Attributes
    ----------
    n_input : int
    removed : dict of str to int
        Stars removed by each cut, in the order applied, among the stars the
        previous cuts left; switched-off cuts are absent.
    n_selected : int
        ``n_input - sum(removed.values())``.
    sample : str
    """

    n_input: int
    removed: dict
    n_selected: int
    sample: str

    def __str__(self):
        width = max([len(k) for k in self.removed] + [8])
        lines = [f"paper selection ({self.sample}): {self.n_input} stars"]
        for name, count in self.removed.items():
            lines.append(f"  {name:<{width}}  removed {count:>8d}")
        lines.append(f"  {'selected':<{width}}          {self.n_selected:>8d}")
        return "\n".join(lines)

    def as_dict(self):
        """Plain dict (for JSON)."""
        return {"sample": self.sample, "n_input": self.n_input, "removed": dict(self.removed),
                "n_selected": self.n_selected}


class Selection(tuple):
    """``(mask, report)`` of :func:`paper_selection`, also as ``.mask`` and ``.report``."""

    def __new__(cls, mask, report):
        return super().__new__(cls, (mask, report))

    @property
    def mask(self):
        return self[0]

    @property
    def report(self):
        return self[1]


def log_luminosity(mag, parallax):
    r""":math:`\log_{10}(L/L_\odot)` in :math:`K_s` from an extinction-corrected magnitude and a parallax.

    :math:`M = m + 5\log_{10}\varpi[{\rm mas}] - 10` and
    :math:`\log_{10} L/L_\odot = 0.4\,(M_\odot - M)` with astroNN's
    :math:`M_{\odot,K_s} = 3.27`.  NaN where the parallax is not positive or an
    input is missing.

    >>> round(float(log_luminosity(10.0, 1.0)), 3)   # M = 0
    1.308
    """
    mag = np.asarray(mag, dtype=float)
    plx = _in(parallax, u.mas, "parallax")
    bad = is_missing(mag) | is_missing(plx) | ~(plx > 0)
    with np.errstate(all="ignore"):
        absmag = mag + 5.0 * np.log10(np.where(bad, 1.0, plx)) - 10.0
        out = 0.4 * (SOLAR_ABSMAG_KS - absmag)
    return np.where(bad, np.nan, out)


def _in(value, unit, name):
    if isinstance(value, u.Quantity):
        try:
            return np.asarray(value.to_value(unit), dtype=float)
        except u.UnitConversionError:
            raise u.UnitTypeError(f"{name} must be in units of {unit}; got '{value.unit}'") from None
    return np.asarray(value, dtype=float)


def _threshold(value, unit, name):
    if value is None:
        return None
    out = _in(value, unit, name)
    if out.ndim != 0 or not np.isfinite(out):
        raise ValueError(f"{name} must be a finite scalar; got {value!r}")
    return float(out)


def _column(dataset, name, cut, parameter):
    if name not in dataset:
        raise MissingColumnError(
            f"cut '{cut}' needs column '{name}', which the dataset does not have; "
            f"pass {parameter}=None to switch the cut off"
        )
    return dataset[name]


def paper_selection(dataset, sample="train", *, snr_split=PAPER_SNR_SPLIT,
                    max_parallax_error=PAPER_MAX_PARALLAX_ERROR_MAS * u.mas,
                    min_visibility_periods=PAPER_MIN_VISIBILITY_PERIODS, require_starflag_zero=True,
                    max_vscatter=PAPER_MAX_VSCATTER_KMS * u.km / u.s,
                    min_log_luminosity=PAPER_MIN_LOG_LUMINOSITY, require_spectrum=True,
                    require_mag=True, require_extinction=True):
    r"""Select stars as Leung & Bovy (2019) did; report what each cut removed.

    Cuts, applied in this order (the name is the key of ``report.removed``):

    ``spectrum`` (``require_spectrum``)
        ``spectra`` has a finite, non-zero pixel.
    ``mag`` (``require_mag``)
        ``mag`` (2MASS :math:`K_s`) is not missing.
    ``extinction`` (``require_extinction``)
        ``mag_ext`` (AKTARG) is not missing and :math:`\ge 0`.  The paper's
        notebook instead kept stars with a negative AKTARG, uncorrected; pass
        False to do the same.
    ``snr`` (``snr_split``)
        ``snr`` > ``snr_split`` for ``sample="train"``, < for ``"test"``; a
        star at exactly the split is in neither.  ``sample="all"`` skips it.
    ``parallax``
        ``parallax`` is not missing (always applied).
    ``parallax_error`` (``max_parallax_error``, mas if a number)
        ``parallax_error`` < ``max_parallax_error``.
    ``visibility_periods`` (``min_visibility_periods``)
        ``visibility_periods_used`` :math:`\ge` ``min_visibility_periods``.
    ``starflag`` (``require_starflag_zero``)
        ``starflag == 0``.
    ``vscatter`` (``max_vscatter``, km/s if a number)
        ``vscatter`` < ``max_vscatter``.
    ``luminosity`` (``min_log_luminosity``)
        :func:`log_luminosity` of the extinction-corrected ``mag`` and the
        parallax > ``min_log_luminosity``, or ``parallax`` < 0.

    Parameters
    ----------
    dataset : Dataset, astropy Table, or mapping of column name to array
    sample : {"train", "test", "all"}
    snr_split, max_parallax_error, min_visibility_periods, max_vscatter, min_log_luminosity : number, Quantity or None
        Thresholds; None switches the cut off.
    require_starflag_zero, require_spectrum, require_mag, require_extinction : bool
        False switches the cut off.

    Returns
    -------
    Selection
        ``(mask, report)``: boolean mask over the dataset and a :class:`SelectionReport`.

    Raises
    ------
    MissingColumnError
        A cut that is on needs a column the dataset lacks (the message names it
        and the parameter that switches the cut off).
    ValueError
        Unknown ``sample`` or a non-scalar threshold.
    """
    if isinstance(dataset, Mapping):
        dataset = Dataset(columns=dataset)
    elif not isinstance(dataset, Dataset):
        dataset = read_dataset(dataset)
    if sample not in ("train", "test", "all"):
        raise ValueError(f"sample must be 'train', 'test' or 'all'; got {sample!r}")
    max_plx_err = _threshold(max_parallax_error, u.mas, "max_parallax_error")
    max_vscatter = _threshold(max_vscatter, u.km / u.s, "max_vscatter")
    snr_split = _threshold(snr_split, u.dimensionless_unscaled, "snr_split")
    min_vis = _threshold(min_visibility_periods, u.dimensionless_unscaled, "min_visibility_periods")
    min_logl = _threshold(min_log_luminosity, u.dimensionless_unscaled, "min_log_luminosity")

    n = len(dataset)
    cuts = {}
    if require_spectrum:
        if "spectra" not in dataset:
            raise MissingColumnError("cut 'spectrum' needs 'spectra'; pass require_spectrum=False to switch it off")
        spec = dataset["spectra"]
        cuts["spectrum"] = np.any(np.isfinite(spec) & (spec != 0), axis=1)
    if require_mag:
        cuts["mag"] = ~is_missing(_column(dataset, "mag", "mag", "require_mag"))
    if require_extinction:
        ext = _column(dataset, "mag_ext", "extinction", "require_extinction").astype(float)
        cuts["extinction"] = ~is_missing(ext) & (ext >= 0)
    if sample != "all" and snr_split is not None:
        snr = _column(dataset, "snr", "snr", "snr_split").astype(float)
        cuts["snr"] = (snr > snr_split) if sample == "train" else (snr < snr_split)
        cuts["snr"] &= ~is_missing(snr)
    plx = _column(dataset, "parallax", "parallax", "(always on)").astype(float)
    cuts["parallax"] = ~is_missing(plx)
    if max_plx_err is not None:
        err = _column(dataset, "parallax_error", "parallax_error", "max_parallax_error").astype(float)
        cuts["parallax_error"] = ~is_missing(err) & (err < max_plx_err)
    if min_vis is not None:
        vis = _column(dataset, "visibility_periods_used", "visibility_periods", "min_visibility_periods")
        vis = vis.astype(float)
        cuts["visibility_periods"] = ~is_missing(vis) & (vis >= min_vis)
    if require_starflag_zero:
        cuts["starflag"] = _column(dataset, "starflag", "starflag", "require_starflag_zero") == 0
    if max_vscatter is not None:
        vsc = _column(dataset, "vscatter", "vscatter", "max_vscatter").astype(float)
        cuts["vscatter"] = ~is_missing(vsc) & (vsc < max_vscatter)
    if min_logl is not None:
        _column(dataset, "mag", "luminosity", "min_log_luminosity")
        with np.errstate(invalid="ignore"):
            logl = log_luminosity(dataset.corrected_mag(), plx)
            cuts["luminosity"] = (logl > min_logl) | (~is_missing(plx) & (plx < 0))

    mask = np.ones(n, dtype=bool)
    removed = {}
    for name in CUTS:
        if name in cuts:
            removed[name] = int(np.count_nonzero(mask & ~cuts[name]))
            mask &= cuts[name]
    report = SelectionReport(n_input=n, removed=removed, n_selected=int(mask.sum()), sample=sample)
    assert report.n_selected + sum(removed.values()) == n
    return Selection(mask, report)


def train_validation_split(n, validation_fraction=PAPER_VALIDATION_FRACTION, *, seed):
    """Seeded random split of ``n`` stars (or of a dataset) into training and validation indices.

    Parameters
    ----------
    n : int or Dataset
    validation_fraction : float
        In (0, 1); the paper's 0.1 by default.  ``round(n * fraction)`` stars
        go to validation.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same split.

    Returns
    -------
    train_index, validation_index : ndarray of int
        Sorted, disjoint, together ``0 .. n-1``.

    Examples
    --------
    >>> tr, va = train_validation_split(10, seed=42)
    >>> len(tr), len(va), sorted(set(tr) | set(va)) == list(range(10))
    (9, 1, True)
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        if hasattr(n, "__len__"):
            n = len(n)
        else:
            raise TypeError(f"n must be a number of stars or a dataset; got {type(n).__name__}")
    if n < 2:
        raise ValueError(f"cannot split {n} star(s) into training and validation sets")
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}")
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer (the split is reproducible); got {seed!r}")
    n_val = int(round(n * float(validation_fraction)))
    n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(int(seed)).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
