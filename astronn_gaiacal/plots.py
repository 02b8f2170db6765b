"""Figures like the paper's, written as PNG files.

Every ``plot_*`` function takes plain arrays or Quantities, writes one PNG
atomically and returns its path.  Figures are drawn on matplotlib's Agg canvas
without pyplot, so the user's backend is never switched.  :func:`new_figure`
and :func:`save_figure` (from :mod:`astronn_gaiacal.io.figures`) make and write
such a figure for any other plot of the package.
"""
from collections import namedtuple

import numpy as np
from astropy import units as u

from .constants import MAGIC_NUMBER, ZEROPOINT_CONVENTION
from .io.figures import new_figure, save_figure
from .metrics import sigma_mad
from .models.calibration import coverage

__all__ = [
    "new_figure",
    "save_figure",
    "BinnedMap",
    "FEATURE_LABELS",
    "ZEROPOINT_MAP_PAIRS",
    "binned_median_2d",
    "plot_distance_comparison",
    "plot_parallax_residuals",
    "plot_reliability",
    "plot_sigma_mad",
    "plot_zeropoint_maps",
    "plot_zeropoint_trends",
]

#: Axis labels, with units, of the offset features (column names as in Gaia and APOGEE).
FEATURE_LABELS = {
    "phot_g_mean_mag": r"$G$ [mag]",
    "bp_rp": r"$G_{\rm BP} - G_{\rm RP}$ [mag]",
    "teff": r"$T_{\rm eff}$ [K]",
}

#: The 2-D panels of the paper's Fig. 4, ``(x, y)`` column names: G against BP-RP and G against Teff.
ZEROPOINT_MAP_PAIRS = (("bp_rp", "phot_g_mean_mag"), ("teff", "phot_g_mean_mag"))


def _values(x, unit=None):
    if isinstance(x, u.Quantity):
        x = x.to_value(unit) if unit is not None else x.value
    x = np.asarray(x, dtype=float)
    return np.where(x == MAGIC_NUMBER, np.nan, x)


def _binned(x, y, bins, stat=np.nanmedian, min_count=5):
    centres, values = [], []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (x >= lo) & (x < hi) & np.isfinite(y)
        if sel.sum() >= min_count:
            centres.append(0.5 * (lo + hi))
            values.append(stat(y[sel]))
    return np.array(centres), np.array(values)


def plot_parallax_residuals(gaia_parallax, nn_parallax, path, zeropoint=None):
    """Paper Fig. 3: NN - Gaia parallax against Gaia parallax, one panel per model.

    Parameters
    ----------
    gaia_parallax : array_like or Quantity [mas]
    nn_parallax : dict
        ``{label: NN parallax}`` (e.g. ``{'no offset': ..., 'constant offset': ...}``).
    path : str
    zeropoint : Quantity, optional
        Injected or fitted zero-point; drawn as the expected residual ``-zeropoint``.
    """
    gaia = _values(gaia_parallax, u.mas)
    fig = new_figure(figsize=(5 * len(nn_parallax), 4))
    axes = fig.subplots(1, len(nn_parallax), sharey=True, squeeze=False)
    bins = np.quantile(gaia[np.isfinite(gaia)], np.linspace(0, 1, 16)) if np.isfinite(gaia).any() else [0, 1]
    for ax, (label, nn) in zip(axes[0], nn_parallax.items()):
        resid = _values(nn, u.mas) - gaia
        ax.scatter(gaia, resid, s=2, alpha=0.3, color="0.5", rasterized=True)
        cx, cy = _binned(gaia, resid, bins)
        ax.plot(cx, cy, "o-", color="C3", label="running median")
        ax.axhline(0, color="k", lw=0.8)
        if zeropoint is not None:
            ax.axhline(-zeropoint.to_value(u.mas), color="C0", ls="--", label="-zero-point")
        ax.set_xlabel(r"Gaia parallax $\varpi$ [mas]")
        ax.set_title(label)
        ax.set_ylim(-0.5, 0.5)
        ax.legend(loc="upper right", fontsize=8)
    axes[0][0].set_ylabel(r"$\varpi_{\rm NN} - \varpi_{\rm Gaia}$ [mas]")
    return save_figure(fig, path, bbox_inches="tight")


def plot_zeropoint_trends(features, zeropoint, zeropoint_error, path, truth=None, trends=None, refit=None):
    """Paper Fig. 4: zero-point against each feature, with uncertainty and the injected truth.

    Parameters
    ----------
    features : dict
        ``{name: values}`` (e.g. G, BP-RP, Teff).
    zeropoint, zeropoint_error : Quantity [mas or uas]
        Per-star model zero-point and its uncertainty.
    truth : Quantity, optional
        Injected per-star zero-point.
    trends : dict, optional
        ``{name: QuadraticTrend}`` fitted summaries to overplot.
    refit : tuple of Quantity, or dict of them, optional
        Per-star ``(zeropoint, error)`` of another estimate of the same stars
        (e.g. :meth:`~astronn_gaiacal.models.ZeropointModel.refit_zeropoint_trend`), binned like the model;
        a dict ``{name: (zeropoint, error)}`` gives each panel its own (one fit per feature).
    """
    zp, err = _values(zeropoint, u.uas), _values(zeropoint_error, u.uas)
    fig = new_figure(figsize=(4.5 * len(features), 3.8))
    axes = fig.subplots(1, len(features), sharey=True, squeeze=False)
    for ax, (name, x) in zip(axes[0], features.items()):
        x = _values(x)
        bins = np.quantile(x[np.isfinite(x)], np.linspace(0, 1, 13))
        cx, cy = _binned(x, zp, bins)
        _, ce = _binned(x, err, bins)
        ax.scatter(x, zp, s=2, alpha=0.2, color="0.5", rasterized=True)
        if cx.size:
            ax.fill_between(cx, cy - ce, cy + ce, color="C3", alpha=0.25, label=r"model $\pm1\sigma$")
            ax.plot(cx, cy, color="C3", label="model (median)")
        mine = refit.get(name) if isinstance(refit, dict) else refit
        if mine is not None:
            rx, ry = _binned(x, _values(mine[0], u.uas), bins)
            _, re = _binned(x, _values(mine[1], u.uas), bins)
            ax.fill_between(rx, ry - re, ry + re, color="C2", alpha=0.2)
            ax.plot(rx, ry, color="C2", label=r"refit, network fixed $\pm1\sigma$")
        if truth is not None:  # binned like the model: the truth may depend on another feature
            tx, ty = _binned(x, _values(truth, u.uas), bins)
            ax.plot(tx, ty, color="k", ls="--", lw=1, label="injected (median)")
        if trends and name in trends:
            xx = np.linspace(*trends[name].valid_range, 50)
            ax.plot(xx, trends[name](xx).value, color="C0", lw=1, label="quadratic fit")
        ax.set_xlabel(FEATURE_LABELS.get(name, name))
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel(r"zero-point $\varpi_0$ [$\mu$as]")
    return save_figure(fig, path, bbox_inches="tight")


#: Result of :func:`binned_median_2d`: ``median`` and ``count`` of shape (nx, ny), and the bin edges.
BinnedMap = namedtuple("BinnedMap", ["median", "count", "x_edges", "y_edges"])


def binned_median_2d(x, y, z, bins=None, min_count=5, coverage=0.99):
    """Median of ``z`` in 2-D bins of ``(x, y)`` (:func:`scipy.stats.binned_statistic_2d`), sparse bins NaN.

    Parameters
    ----------
    x, y, z : array_like or Quantity
        Per star; NaN and -9999 are left out (Quantities in their own unit).
    bins : int or [x_edges, y_edges], optional
        Bins per axis, spread evenly over the central ``coverage`` of the stars
        in each coordinate, or the edges themselves.  Default:
        ``sqrt(N / (2 min_count))`` per axis (an average of 2 ``min_count`` stars a
        bin), between 4 and 25.
    min_count : int
        Bins with fewer stars are NaN (left blank when drawn).
    coverage : float
        Central fraction of the stars the default edges span in each coordinate.

    Returns
    -------
    BinnedMap
        ``median[i, j]`` and ``count[i, j]`` of the stars with
        ``x_edges[i] <= x < x_edges[i + 1]`` and ``y_edges[j] <= y < y_edges[j + 1]``
        (the last bin of each axis includes its upper edge).

    Raises
    ------
    ValueError
        No star has finite ``x``, ``y`` and ``z``.
    """
    from scipy.stats import binned_statistic_2d

    x, y, z = _values(x), _values(y), _values(z)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if not good.any():
        raise ValueError("no star with finite x, y and z to bin")
    x, y, z = x[good], y[good], z[good]
    if bins is None or np.ndim(bins) == 0:
        n = int(np.clip(np.sqrt(x.size / (2 * min_count)), 4, 25)) if bins is None else int(bins)
        edges = []
        for v in (x, y):
            lo, hi = np.quantile(v, [(1 - coverage) / 2, 1 - (1 - coverage) / 2])
            if hi <= lo:  # one value: a bin around it
                lo, hi = lo - 0.5, hi + 0.5
            edges.append(np.linspace(lo, hi, n + 1))
        bins = edges
    count, xe, ye, _ = binned_statistic_2d(x, y, z, statistic="count", bins=bins)
    median = binned_statistic_2d(x, y, z, statistic="median", bins=[xe, ye]).statistic
    median[count < min_count] = np.nan
    return BinnedMap(median, count.astype(int), xe, ye)


def plot_zeropoint_maps(features, zeropoint, path, truth=None, pairs=ZEROPOINT_MAP_PAIRS, bins=None, min_count=5,
                        valid_ranges=None):
    """Paper Fig. 4's 2-D panels: the median zero-point in bins of G against BP-RP and of G against Teff.

    One row of panels coloured by the binned median zero-point, with one colour
    bar in micro-arcsec; with ``truth`` a second row of the median of (zero-point
    - injected), on a colour scale symmetric about 0.  Bins with fewer than
    ``min_count`` stars are blank.  The companion of :func:`plot_zeropoint_trends`
    (the 1-D panels).

    Parameters
    ----------
    features : dict
        ``{name: values}`` per star; the pairs of ``pairs`` whose two columns are
        both there are drawn.
    zeropoint : Quantity [mas or uas]
        Per-star zero-point (convention ``parallax_gaia = parallax_true + zeropoint``).
    path : str
    truth : Quantity, optional
        Injected per-star zero-point.
    pairs : sequence of (str, str)
        ``(x, y)`` feature names per panel (default :data:`ZEROPOINT_MAP_PAIRS`);
        a magnitude axis (name ending in ``mag``) is drawn bright side up.
    bins, min_count
        As :func:`binned_median_2d`.
    valid_ranges : dict, optional
        ``{name: (low, high)}``, e.g. the training stars' range of each feature,
        outside which a trend is extrapolated: drawn as dashed lines.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        ``features`` holds no pair of ``pairs``.
    """
    zp = _values(zeropoint, u.uas)
    pairs = [(xn, yn) for xn, yn in pairs if xn in features and yn in features]
    if not pairs:
        raise ValueError(f"features {sorted(features)} hold neither pair of columns {list(ZEROPOINT_MAP_PAIRS)}")
    rows = [("zero-point", zp, "viridis", False)]
    if truth is not None:
        rows.append(("zero-point $-$ injected", zp - _values(truth, u.uas), "RdBu_r", True))
    fig = new_figure(figsize=(4.4 * len(pairs) + 1.0, 3.8 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(pairs), squeeze=False)
    for row, (title, z, cmap, symmetric) in zip(axes, rows):
        maps = [binned_median_2d(features[xn], features[yn], z, bins=bins, min_count=min_count) for xn, yn in pairs]
        finite = np.concatenate([m.median[np.isfinite(m.median)] for m in maps])
        lo, hi = (finite.min(), finite.max()) if finite.size else (-1.0, 1.0)
        if symmetric:
            lo, hi = -max(abs(lo), abs(hi), 1e-3), max(abs(lo), abs(hi), 1e-3)
        for ax, (xn, yn), m in zip(row, pairs, maps):
            mesh = ax.pcolormesh(m.x_edges, m.y_edges, np.ma.masked_invalid(m.median.T), cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xlabel(FEATURE_LABELS.get(xn, xn))
            ax.set_ylabel(FEATURE_LABELS.get(yn, yn))
            for name, invert, line in ((xn, ax.invert_xaxis, ax.axvline), (yn, ax.invert_yaxis, ax.axhline)):
                if name.endswith("mag"):
                    invert()
                for edge in (valid_ranges or {}).get(name, ()):
                    line(edge, color="k", ls="--", lw=0.8)
            ax.set_title(f"{title}: {int((m.count >= min_count).sum())} bins of $\\geq${min_count} stars",
                         fontsize=9)
        fig.colorbar(mesh, ax=list(row), label=rf"median {title} [$\mu$as]")
    fig.suptitle(f"Zero-point, {ZEROPOINT_CONVENTION}; blank: fewer than {min_count} stars"
                 + ("; dashed: the valid ranges" if valid_ranges else ""), fontsize=10)
    return save_figure(fig, path, bbox_inches="tight")


def plot_sigma_mad(labels, fractional_residual, path):
    """Paper Fig. 7 style: sigma_MAD and median bias of fractional distance residuals per label bin.

    Parameters
    ----------
    labels : dict
        ``{name: values}``, e.g. Teff, log g, SNR.
    fractional_residual : array_like
        (NN - reference) / reference per star.
    """
    r = _values(fractional_residual)
    fig = new_figure(figsize=(4.5 * len(labels), 3.6))
    axes = fig.subplots(1, len(labels), sharey=True, squeeze=False)
    for ax, (name, x) in zip(axes[0], labels.items()):
        x = _values(x)
        bins = np.quantile(x[np.isfinite(x)], np.linspace(0, 1, 11))
        cx, smad = _binned(x, r, bins, stat=lambda v: sigma_mad(v))
        _, bias = _binned(x, r, bins)
        ax.plot(cx, 100 * smad, "o-", label=r"$\sigma_{\rm MAD}$")
        ax.plot(cx, 100 * bias, "s--", label="median bias")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(name)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("fractional distance residual [%]")
    return save_figure(fig, path, bbox_inches="tight")


def plot_distance_comparison(nn_distance, reference_distance, path, reference_label="Gaia"):
    """NN distance against a reference distance (Gaia inverse parallax, or the truth)."""
    nn = _values(nn_distance, u.kpc)
    ref = _values(reference_distance, u.kpc)
    good = np.isfinite(nn) & np.isfinite(ref) & (ref > 0)
    fig = new_figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.scatter(ref[good], nn[good], s=2, alpha=0.3, rasterized=True)
    if good.any():
        hi = np.nanpercentile(np.concatenate([ref[good], nn[good]]), 99)
        ax.plot([0, hi], [0, hi], color="k", lw=0.8)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
    ax.set_xlabel(f"{reference_label} distance [kpc]")
    ax.set_ylabel("NN distance [kpc]")
    return save_figure(fig, path, bbox_inches="tight")


#: Nominal coverages of :func:`plot_reliability` (0.6827 and 0.9545 are 1 and 2 sigma).
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6827, 0.8, 0.9, 0.9545, 0.99)


def plot_reliability(panels, path, levels=RELIABILITY_LEVELS, min_stars=20):
    """Reliability diagram: observed against nominal coverage of the reported uncertainties, one panel per split.

    Parameters
    ----------
    panels : dict
        ``{panel title: {label: (residual, sigma)}}``, e.g. ``{'S/N': {'50-100': (r, s), ...},
        'population': {'giants': ..., 'dwarfs': ...}}``; per star the error of the
        estimate against the truth and its reported uncertainty (same unit).
    levels : sequence of float
        Nominal two-sided Gaussian coverages (:func:`~astronn_gaiacal.models.calibration.coverage`).
    min_stars : int
        Groups with fewer stars are not drawn.
    """
    fig = new_figure(figsize=(4.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, groups) in zip(axes, panels.items()):
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, label="calibrated")
        for label, (residual, sigma) in groups.items():
            cov = coverage(_values(residual), _values(sigma), levels)
            if cov["n"] >= min_stars:
                ax.plot(cov["nominal"], cov["observed"], "o-", ms=3,
                        label=f"{label} (n={cov['n']}; 1σ {100 * cov['within_1sigma']:.0f}%, "
                              f"2σ {100 * cov['within_2sigma']:.0f}%)")
        for p in (0.6827, 0.9545):
            ax.axvline(p, color="0.7", lw=0.6, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("nominal coverage")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("observed coverage")
    return save_figure(fig, path, bbox_inches="tight")
