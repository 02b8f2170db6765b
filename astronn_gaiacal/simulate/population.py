"""The stars of a mock survey: labels, sky positions, distances behind dust, photometry, Gaia parallaxes.

:func:`simulate_catalogue` draws every column of a survey except the spectra
(``docs/simulation.rst`` describes the model and its sources).
"""
import numbers

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

from ..constants import COLUMN_UNITS, DEFAULT_BAND, PAPER_QUADRATIC_TRENDS, PAPER_ZEROPOINT_UAS
from ..conversions import absmag_to_fakemag
from ..zeropoint.trends import paper_trend
from .photometry import (
    EXTINCTION_RATIOS,
    GAIA_G_LIMIT,
    SOLAR_LOGG,
    SOLAR_MBOL,
    SOLAR_TEFF,
    bolometric_correction_ks,
    gaia_colours,
    parallax_error_at,
)
from .outliers import draw_outliers
from .seeds import seed_sequence, stream

__all__ = [
    "DEFAULT_FRACTIONS",
    "DISKS",
    "DUST_AKS_PER_KPC",
    "DUST_SCALES",
    "R0_PC",
    "THICK_FRACTION",
    "apogee_ids",
    "paper_quadratic_zeropoint",
    "simulate_catalogue",
]

#: Sun's Galactocentric radius and the disk/dust scale lengths and heights, pc.
R0_PC = 8200.0
DISKS = {"thin": (2600.0, 300.0), "thick": (2000.0, 900.0)}
DUST_SCALES = (5000.0, 100.0)
#: Midplane A_Ks per kpc at the solar circle (A_V ~ 0.8 mag/kpc).
DUST_AKS_PER_KPC = 0.8 * EXTINCTION_RATIOS[DEFAULT_BAND]

#: Default population fractions of the observed sample.
DEFAULT_FRACTIONS = {"rgb": 0.55, "rc": 0.25, "ms": 0.20}
#: Fraction of thick-disk stars (old, alpha-rich, metal-poor, low-mass).
THICK_FRACTION = 0.15


# ---------------------------------------------------------------------------
# The zero-point


def paper_quadratic_zeropoint(*features):
    """The paper's quadratic zero-point summaries (eqs. 7-9) as an injectable function.

    Each feature's quadratic from :data:`~astronn_gaiacal.constants.PAPER_QUADRATIC_TRENDS`
    is evaluated with the feature clipped to its published validity range (so
    stars outside it get the value at the range's edge); with several features
    the quadratics are averaged.  Eq. 7 (G) is used with the linear coefficient
    -0.92 (the printed -92 cannot be right; see the constants module).

    Parameters
    ----------
    *features : str
        Any of ``'phot_g_mean_mag'`` (default), ``'bp_rp'``, ``'teff'``.

    Returns
    -------
    callable
        ``f(columns) -> Quantity [mas]``, with a ``description`` attribute.

    Examples
    --------
    >>> f = paper_quadratic_zeropoint("phot_g_mean_mag")
    >>> f({"phot_g_mean_mag": [16.0, 20.0]}).to("uas").round(2)
    <Quantity [-55.49, -55.23] uas>
    """
    features = features or ("phot_g_mean_mag",)
    for name in features:
        if name not in PAPER_QUADRATIC_TRENDS:
            raise KeyError(f"no published trend for {name!r}; known: {sorted(PAPER_QUADRATIC_TRENDS)}")

    def zeropoint(columns):
        total = 0.0
        for name in features:
            lo, hi = PAPER_QUADRATIC_TRENDS[name]["range"]
            total = total + paper_trend(name, np.clip(np.asarray(columns[name], dtype=float), lo, hi))
        return (total / len(features)).to(u.mas)

    zeropoint.description = (
        "paper quadratic zero-point (eqs. 7-9) in " + ", ".join(features)
        + " clipped to the validity ranges" + (", averaged" if len(features) > 1 else "")
        + ("; eq. 7 with linear coefficient -0.92" if "phot_g_mean_mag" in features else "")
    )
    return zeropoint


def _zeropoint_values(zeropoint, columns, n):
    """Per-star injected zero-point (mas) and a description for the attrs."""
    if zeropoint is None or (isinstance(zeropoint, str) and zeropoint == "constant"):
        zeropoint = PAPER_ZEROPOINT_UAS * u.uas
    if isinstance(zeropoint, str):
        if zeropoint == "quadratic":
            zeropoint = paper_quadratic_zeropoint()
        else:
            raise ValueError(f"zeropoint must be 'constant', 'quadratic', a Quantity or a callable; got {zeropoint!r}")
    if isinstance(zeropoint, numbers.Number) and zeropoint == 0:
        zeropoint = 0.0 * u.mas
    if isinstance(zeropoint, u.Quantity):
        if zeropoint.ndim != 0:
            raise ValueError("a Quantity zeropoint must be a scalar; pass a callable for per-star values")
        try:
            value = float(zeropoint.to_value(u.mas))
        except u.UnitConversionError:
            raise u.UnitTypeError(
                f"zeropoint must be an angle (e.g. -52.3 * u.uas); got unit '{zeropoint.unit}'"
            ) from None
        return np.full(n, value), f"constant {value * 1000:.4g} uas"
    if callable(zeropoint):
        values = zeropoint(columns)
        if isinstance(values, u.Quantity):
            try:
                values = values.to_value(u.mas)
            except u.UnitConversionError:
                raise u.UnitTypeError(f"the zeropoint callable returned unit '{values.unit}', not an angle") from None
        values = np.broadcast_to(np.asarray(values, dtype=float), (n,)).copy()
        if not np.all(np.isfinite(values)):
            raise ValueError("the zeropoint callable returned NaN or infinite values")
        name = getattr(zeropoint, "description", None) or f"callable {getattr(zeropoint, '__name__', repr(zeropoint))}"
        return values, name
    raise TypeError(
        "zeropoint must be a Quantity (e.g. -52.3 * u.uas), 0, 'constant', 'quadratic' or a callable "
        f"f(columns) -> mas; got {type(zeropoint).__name__} (plain numbers are ambiguous: uas or mas?)"
    )


# ---------------------------------------------------------------------------
# SNR


def _snr_values(snr, mag, rng):
    n = len(mag)
    if isinstance(snr, str):
        if snr != "apogee":
            raise ValueError(f"snr must be 'apogee', a number, a (low, high) pair or a callable; got {snr!r}")
        # APOGEE's design: S/N = 100 at H = 12.2 in three visits (H - Ks ~ 0.15 for giants), photon-noise
        # scaling with flux, and a spread of visits/conditions (0.12 dex)
        values = 100.0 * 10.0 ** (-0.2 * (mag - 12.05)) * 10.0 ** rng.normal(0.0, 0.12, n)
    elif callable(snr):
        values = np.broadcast_to(np.asarray(snr(rng, n), dtype=float), (n,)).copy()
    elif np.ndim(snr) == 1 and len(snr) == 2:
        lo, hi = (float(v) for v in snr)
        if not 0 < lo < hi:
            raise ValueError(f"snr range must satisfy 0 < low < high; got {snr!r}")
        values = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    elif np.ndim(snr) == 0 and isinstance(snr, numbers.Real):
        values = np.full(n, float(snr))
    else:
        raise TypeError(f"snr must be 'apogee', a number, a (low, high) pair or a callable; got {snr!r}")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError("snr values must be finite and positive")
    return np.clip(values, 5.0, None)


# ---------------------------------------------------------------------------
# The stars


def _check_fractions(fractions):
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    unknown = set(fractions) - set(DEFAULT_FRACTIONS)
    if unknown:
        raise KeyError(f"fractions has unknown population(s) {sorted(unknown)}; known: {list(DEFAULT_FRACTIONS)}")
    p = np.array([float(fractions.get(k, 0.0)) for k in DEFAULT_FRACTIONS])
    if np.any(p < 0) or p.sum() <= 0 or not np.all(np.isfinite(p)):
        raise ValueError(f"fractions must be non-negative with a positive sum; got {fractions}")
    return p / p.sum()


def _labels(n, fractions, rng):
    """Population, thick-disk flag and physically consistent labels."""
    pop = rng.choice(np.array(list(DEFAULT_FRACTIONS)), size=n, p=fractions)
    thick = rng.random(n) < THICK_FRACTION
    fe_h = np.where(thick, rng.normal(-0.5, 0.25, n), rng.normal(-0.05, 0.2, n))
    fe_h = np.clip(fe_h, -1.5, 0.45)
    alpha_fe = np.where(thick, 0.22 - 0.05 * (fe_h + 0.5), 0.02 - 0.12 * np.minimum(fe_h, 0.0))
    alpha_fe = alpha_fe + rng.normal(0.0, 0.03, n)

    giant_mass = np.clip(1.3 * np.exp(rng.normal(0.0, 0.3, n)), 0.8, 3.0)
    mass = np.where(thick, np.clip(rng.normal(0.95, 0.07, n), 0.75, 1.2), giant_mass)
    teff = np.empty(n)
    logg = np.empty(n)
    lum = np.empty(n)

    rgb = pop == "rgb"
    logg[rgb] = rng.uniform(1.0, 3.5, rgb.sum())
    teff[rgb] = (4600.0 + 420.0 * (logg[rgb] - 2.5) - 280.0 * fe_h[rgb] + 100.0 * (mass[rgb] - 1.3)
                 + rng.normal(0.0, 40.0, rgb.sum()))

    rc = pop == "rc"
    mass[rc] = np.minimum(mass[rc], 2.5)
    lum[rc] = 10.0 ** (1.70 - 0.25 * np.maximum(mass[rc] - 1.8, 0.0) + rng.normal(0.0, 0.04, rc.sum()))
    teff[rc] = 4720.0 + 150.0 * (mass[rc] - 1.3) - 250.0 * fe_h[rc] + rng.normal(0.0, 50.0, rc.sum())

    ms = pop == "ms"
    nms = ms.sum()
    mass[ms] = np.where(thick[ms], rng.uniform(0.7, 0.95, nms), rng.uniform(0.75, 1.3, nms))
    age = rng.random(nms)
    lum[ms] = 10.0 ** (4.0 * np.log10(mass[ms]) + 0.25 * age)
    radius_ms = 10.0 ** (0.8 * np.log10(mass[ms]) + 0.12 * age)
    teff[ms] = SOLAR_TEFF * (lum[ms] / radius_ms**2) ** 0.25

    # R^2 = G M / g and L = R^2 (Teff / Teff_sun)^4 (solar units)
    lum[rgb] = mass[rgb] * 10.0 ** (SOLAR_LOGG - logg[rgb]) * (teff[rgb] / SOLAR_TEFF) ** 4
    radius2 = lum / (teff / SOLAR_TEFF) ** 4
    logg[~rgb] = SOLAR_LOGG + np.log10(mass[~rgb]) - np.log10(radius2[~rgb])

    # [C/N]: birth value for dwarfs; first dredge-up in giants, lower for higher mass
    # (slope as in APOGEE-Kepler giants, Martig et al. 2016), plus 0.04 dex intrinsic scatter
    c_n = np.where(ms, -0.05, -0.25 - 1.2 * np.log10(mass) + 0.1 * fe_h - 0.05 * rc) + rng.normal(0.0, 0.04, n)
    return dict(population=pop, thick=thick, teff=teff, logg=logg, fe_h=fe_h, alpha_fe=alpha_fe,
                c_n=c_n, mass=mass, luminosity=lum)


def _sky(n, rng):
    """Galactic (l, b) concentrated to the plane, within APO's sky (dec > -30 deg)."""
    out_l, out_b, out_ra, out_dec = [], [], [], []
    have = 0
    while have < n:
        m = 2 * (n - have) + 16
        l = rng.uniform(0.0, 360.0, m)
        b = np.where(rng.random(m) < 0.8, rng.laplace(0.0, 6.0, m), np.degrees(np.arcsin(rng.uniform(-1, 1, m))))
        b = np.clip(b, -89.0, 89.0)
        icrs = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
        keep = icrs.dec.deg > -30.0
        out_l.append(l[keep])
        out_b.append(b[keep])
        out_ra.append(icrs.ra.deg[keep])
        out_dec.append(icrs.dec.deg[keep])
        have += keep.sum()
    return tuple(np.concatenate(x)[:n] for x in (out_l, out_b, out_ra, out_dec))


def _distances(absmag, g_minus_ks, thick, l, b, mag_limits, rng, selection_slope):
    """Distance (pc) and A_Ks per star: disk density x d^2 within the magnitude window and the Gaia
    G limit, with dust along the line of sight."""
    grid = np.geomspace(10.0, 60000.0, 1200)
    dlog = np.log(grid[1] / grid[0])
    lo, hi = mag_limits
    n = len(absmag)
    patchiness = np.exp(rng.normal(0.0, 0.3, n))
    dist = np.empty(n)
    a_ks = np.empty(n)
    for s in range(0, n, 2048):
        sl = slice(s, min(s + 2048, n))
        cb, sb = np.cos(np.radians(b[sl]))[:, None], np.sin(np.radians(b[sl]))[:, None]
        cl, sl_ = np.cos(np.radians(l[sl]))[:, None], np.sin(np.radians(l[sl]))[:, None]
        x = R0_PC - grid * cb * cl
        y = grid * cb * sl_
        z = np.abs(grid * sb)
        r = np.hypot(x, y)
        dust = np.exp(-(r - R0_PC) / DUST_SCALES[0] - z / DUST_SCALES[1])
        ext = np.concatenate([np.zeros((dust.shape[0], 1)),
                              np.cumsum(0.5 * (dust[:, 1:] + dust[:, :-1]) * np.diff(grid), axis=1)], axis=1)
        ext *= DUST_AKS_PER_KPC / 1000.0 * patchiness[sl, None]
        mag = absmag[sl, None] + 5.0 * np.log10(grid / 10.0) + ext
        hr = np.where(thick[sl], DISKS["thick"][0], DISKS["thin"][0])[:, None]
        hz = np.where(thick[sl], DISKS["thick"][1], DISKS["thin"][1])[:, None]
        weight = np.exp(-(r - R0_PC) / hr - z / hz) * grid**3 * 10.0 ** (-selection_slope * (mag - hi))
        g_excess = (EXTINCTION_RATIOS["G"] - EXTINCTION_RATIOS[DEFAULT_BAND]) / EXTINCTION_RATIOS[DEFAULT_BAND]
        inside = (mag >= lo) & (mag <= hi) & (mag + g_minus_ks[sl, None] + g_excess * ext <= GAIA_G_LIMIT)
        cell = 0.5 * (weight[:, 1:] + weight[:, :-1]) * (inside[:, 1:] & inside[:, :-1])
        cdf = np.cumsum(cell, axis=1)
        total = cdf[:, -1]
        if np.any(total <= 0):
            raise ValueError(
                f"mag_limits={tuple(mag_limits)} (with Gaia G <= {GAIA_G_LIMIT}) leave no observable distance "
                "for some stars; widen them"
            )
        j = np.minimum((cdf < (rng.random(len(total)) * total)[:, None]).sum(axis=1), cell.shape[1] - 1)
        frac = rng.random(len(total))
        rows = np.arange(len(total))
        dist[sl] = grid[j] * np.exp(frac * dlog)
        a_ks[sl] = ext[rows, j] + frac * (ext[rows, j + 1] - ext[rows, j])
    return dist, a_ks


def apogee_ids(ra, dec):
    """APOGEE-style 2MASS designations (``2MhhmmsssS+ddmmsss``) of positions.

    Parameters
    ----------
    ra, dec : array_like
        Degrees.

    Returns
    -------
    ndarray of str

    Examples
    --------
    >>> apogee_ids([10.0, 250.5], [-5.5, 30.25]).tolist()
    ['2M00400000-0530000', '2M16420000+3015000']
    """
    cs = np.round(np.asarray(ra) / 15.0 * 360000.0).astype(np.int64) % 8640000
    ds = np.round(np.abs(np.asarray(dec)) * 36000.0).astype(np.int64)
    sign = np.where(np.asarray(dec) < 0, "-", "+")
    ids = np.array([
        f"2M{c // 360000:02d}{c // 6000 % 60:02d}{c % 6000:04d}{s}{d // 36000:02d}{d // 600 % 60:02d}{d % 600:03d}"
        for c, d, s in zip(cs, ds, sign)
    ])
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    for i in np.flatnonzero(counts > 1):
        dup = np.flatnonzero(ids == ids[first[i]])
        ids[dup[1:]] = [f"{ids[k]}_{m + 2}" for m, k in enumerate(dup[1:])]
    return ids


def _validate(n_stars, mag_limits, selection_slope, mag_error):
    if not isinstance(n_stars, numbers.Integral) or isinstance(n_stars, bool) or n_stars < 1:
        raise ValueError(f"n_stars must be a positive integer, got {n_stars!r}")
    try:
        lo, hi = (float(v) for v in mag_limits)
    except (TypeError, ValueError):
        lo = hi = np.nan
    if not lo < hi:
        raise ValueError(f"mag_limits must be (bright, faint) with bright < faint; got {mag_limits!r}")
    for name, value in (("selection_slope", selection_slope), ("mag_error", mag_error)):
        if not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return lo, hi


def simulate_catalogue(n_stars, seed=0, snr="apogee", zeropoint=None, fractions=None, mag_limits=(7.0, 12.5),
                       selection_slope=0.3, mag_error=0.02, outliers=None):
    """Draw the stars of a mock survey: every column of
    :func:`~astronn_gaiacal.simulate.survey.simulate_survey` except the spectra.

    Parameters are those of :func:`~astronn_gaiacal.simulate.survey.simulate_survey`.

    Returns
    -------
    columns : dict
        name -> 1-D array.
    units : dict
    attrs : dict
    """
    mag_limits = _validate(n_stars, mag_limits, selection_slope, mag_error)
    ss = seed_sequence(seed)
    p = _check_fractions(fractions)
    lab = _labels(n_stars, p, stream(ss, "population"))
    odd = draw_outliers(outliers, n_stars, stream(ss, "outliers"))  # None when off (outliers.py)

    bc = bolometric_correction_ks(lab["teff"])
    absmag = SOLAR_MBOL - 2.5 * np.log10(lab["luminosity"]) - bc
    bp_rp0, g_ks0 = gaia_colours(lab["teff"], lab["fe_h"])
    l, b, ra, dec = _sky(n_stars, stream(ss, "sky"))
    dist, a_ks = _distances(absmag, g_ks0, lab["thick"], l, b, mag_limits, stream(ss, "distance"), selection_slope)

    rng = stream(ss, "photometry")
    true_mag = absmag + 5.0 * np.log10(dist / 10.0) + a_ks
    if odd is not None:
        true_mag = true_mag - odd.brightening  # an unresolved binary's system magnitude
    mag = true_mag + rng.normal(0.0, mag_error, n_stars)
    ratio = EXTINCTION_RATIOS
    band = ratio[DEFAULT_BAND]
    g_mag = true_mag + g_ks0 + (ratio["G"] - band) / band * a_ks + rng.normal(0.0, 0.003, n_stars)
    bp_rp = bp_rp0 + (ratio["BP"] - ratio["RP"]) / band * a_ks + rng.normal(0.0, 0.01, n_stars)

    columns = {
        "apogee_id": apogee_ids(ra, dec), "ra": ra, "dec": dec, "mag": mag, "mag_ext": a_ks,
        "phot_g_mean_mag": g_mag, "bp_rp": bp_rp, "teff": lab["teff"], "logg": lab["logg"],
        "fe_h": lab["fe_h"], "alpha_fe": lab["alpha_fe"], "c_n": lab["c_n"],
        "snr": _snr_values(snr, mag, stream(ss, "snr")),
    }
    zp, zp_description = _zeropoint_values(zeropoint, columns, n_stars)
    rng = stream(ss, "gaia")
    true_parallax = 1000.0 / dist
    parallax_error = parallax_error_at(g_mag, rng)
    parallax = true_parallax + zp + parallax_error * rng.standard_normal(n_stars)
    if odd is not None:
        parallax, parallax_error = odd.gaia(parallax, parallax_error, true_parallax + zp)
        columns["true_outlier"] = odd.code
    columns.update(
        parallax=parallax,
        parallax_error=parallax_error,
        population=lab["population"],
        true_parallax=true_parallax, true_zeropoint=zp, true_distance=dist, true_mag=true_mag,
        true_absmag_ks=absmag, true_fakemag=absmag_to_fakemag(absmag), true_mass=lab["mass"],
        true_luminosity=lab["luminosity"],
    )
    attrs = {
        "band": DEFAULT_BAND, "gaia_release": "dr2", "simulated": 1,
        "simulator": "astronn_gaiacal.simulate", "seed": str(ss.entropy),
        "seed_spawn_key": list(ss.spawn_key), "zeropoint_model": zp_description,
        "zeropoint_mean_uas": float(np.mean(zp) * 1000.0),
        "snr_model": snr if isinstance(snr, str) else repr(snr),
        "mag_limits": list(mag_limits), "fractions": dict(zip(DEFAULT_FRACTIONS, p.tolist())),
        "parallax_errors_from": "Gaia DR2 errors of APOGEE DR14 stars at the same G "
                                "(astroNN/data/gaiadr2_apogeedr14_parallax.npz)",
    }
    if odd is not None:
        attrs["outliers"] = odd.settings.to_attrs()
    return columns, {name: COLUMN_UNITS[name] for name in columns if name in COLUMN_UNITS}, attrs
