"""The paper's sample selection (Leung & Bovy 2019, Section 2), cut by cut.

Each cut is a named keyword argument with the paper's value as default
(from :mod:`astronn_gaiacal.constants`); pass ``None`` to switch a cut off.
:func:`paper_selection` returns the boolean mask and a report of how many
stars each cut removed, applied in order, so the counts add up to ``N``.

Examples
--------
>>> import numpy as np
>>> from astronn_gaiacal.selection import paper_selection
>>> cols = {"snr": [250, 150], "parallax": [1.0, 1.0], "parallax_error": [0.05, 0.05],
...         "visibility_periods_used": [12, 12], "starflag": [0, 0], "vscatter": [0.1, 0.1],
...         "mag": [10.0, 10.0], "mag_ext": [0.1, 0.1]}
>>> mask, report = paper_selection(cols, split="train")
>>> mask.tolist(), report["snr > 200"]
([True, False], 1)
"""
from collections import OrderedDict

import numpy as np

from .constants import (
    MAGIC_NUMBER,
    PAPER_MAX_PARALLAX_ERROR_MAS,
    PAPER_MAX_VSCATTER_KMS,
    PAPER_MIN_VISIBILITY_PERIODS,
    PAPER_SNR_SPLIT,
    SOLAR_ABSMAG_KS,
)
from .conversions import extinction_correction


def _col(columns, name):
    try:
        values = columns[name]
    except (KeyError, ValueError):
        raise KeyError(f"selection needs column '{name}'") from None
    values = getattr(values, "value", values)
    return np.asarray(values, dtype=float)


def _valid(x):
    return np.isfinite(x) & (x != MAGIC_NUMBER)


def paper_selection(
    columns,
    split=None,
    snr_split=PAPER_SNR_SPLIT,
    max_parallax_error=PAPER_MAX_PARALLAX_ERROR_MAS,
    min_visibility_periods=PAPER_MIN_VISIBILITY_PERIODS,
    starflag_zero=True,
    max_vscatter=PAPER_MAX_VSCATTER_KMS,
    positive_log_luminosity=True,
    valid_magnitude_and_extinction=True,
):
    """Apply the paper's cuts.

    Parameters
    ----------
    columns : Dataset, Table or mapping
        Needs the columns used by the active cuts: ``snr``, ``parallax``,
        ``parallax_error``, ``visibility_periods_used``, ``starflag``,
        ``vscatter``, ``mag``, ``mag_ext``.
    split : {'train', 'test', None}
        ``'train'`` keeps SNR > ``snr_split`` (the paper's training set),
        ``'test'`` SNR < ``snr_split``; ``None`` applies no SNR cut.
    max_parallax_error : float or None
        Keep Gaia parallax error < this (mas).
    min_visibility_periods : int or None
        Keep ``visibility_periods_used`` >= this.
    starflag_zero : bool
        Keep APOGEE ``STARFLAG == 0``.
    max_vscatter : float or None
        Keep APOGEE ``VSCATTER`` < this (km/s).
    positive_log_luminosity : bool
        Keep :math:`\\log_{10} L/L_\\odot > 0` in Ks (from the Gaia parallax and
        extinction-corrected Ks), or a negative parallax; removes dwarfs fainter
        than the Sun.  Negative parallaxes stay: there is no cut on parallax SNR.
    valid_magnitude_and_extinction : bool
        Keep stars with a valid Ks and a valid extinction.

    Returns
    -------
    mask : ndarray of bool
    report : OrderedDict
        ``{cut description: number of stars it removed}`` (in order, from the
        stars that survived the earlier cuts) plus ``'selected'``; the values
        add up to ``N``.
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    cuts = []
    if valid_magnitude_and_extinction:
        mag, ext = _col(columns, "mag"), _col(columns, "mag_ext")
        cuts.append(("valid Ks and extinction", _valid(mag) & _valid(ext)))
    if split is not None:
        snr = _col(columns, "snr")
        if split == "train":
            cuts.append((f"snr > {snr_split:g}", _valid(snr) & (snr > snr_split)))
        else:
            cuts.append((f"snr < {snr_split:g}", _valid(snr) & (snr < snr_split)))
    if max_parallax_error is not None:
        err = _col(columns, "parallax_error")
        cuts.append((f"parallax_error < {max_parallax_error:g} mas", _valid(err) & (err < max_parallax_error)))
    if min_visibility_periods is not None:
        vis = _col(columns, "visibility_periods_used")
        cuts.append(
            (f"visibility_periods_used >= {min_visibility_periods:g}", _valid(vis) & (vis >= min_visibility_periods))
        )
    if starflag_zero:
        flag = _col(columns, "starflag")
        cuts.append(("starflag == 0", flag == 0))
    if max_vscatter is not None:
        vs = _col(columns, "vscatter")
        cuts.append((f"vscatter < {max_vscatter:g} km/s", _valid(vs) & (vs < max_vscatter)))
    if positive_log_luminosity:
        plx = _col(columns, "parallax")
        mag = extinction_correction(_col(columns, "mag"), _col(columns, "mag_ext"))
        with np.errstate(invalid="ignore", divide="ignore"):
            log_lum = 0.4 * (SOLAR_ABSMAG_KS - (mag + 5.0 * (np.log10(plx) - 2.0)))
        keep = _valid(plx) & ((plx < 0) | (np.isfinite(log_lum) & (log_lum > 0)))
        cuts.append(("log10 L/Lsun > 0 or parallax < 0", keep))

    if not cuts:
        raise ValueError("every cut is switched off")
    mask = np.ones(len(cuts[0][1]), bool)
    report = OrderedDict()
    for name, keep in cuts:
        report[name] = int((mask & ~keep).sum())
        mask &= keep
    report["selected"] = int(mask.sum())
    return mask, report


def train_validation_split(n, validation_fraction=0.1, seed=0):
    """Seeded random split of ``n`` stars into training and validation indices (90/10 by default).

    Returns
    -------
    train, validation : ndarray of int
        Sorted indices; ``len(validation) == int(n * validation_fraction)``.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    order = np.random.default_rng(seed).permutation(int(n))
    n_val = int(n * validation_fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
