"""Figures like the paper's, written as PNG files.

Every ``plot_*`` function takes plain arrays or Quantities, writes one PNG
atomically and returns its path.  Figures are drawn on matplotlib's Agg canvas
without pyplot, so the user's backend is never switched.  :func:`new_figure`
and :func:`save_figure` (from :mod:`astronn_gaiacal.io.figures`) make and write
such a figure for any other plot of the package.
"""
import numpy as np
from astropy import units as u

from .constants import MAGIC_NUMBER
from .io.figures import new_figure, save_figure
from .metrics import sigma_mad
from .models.calibration import coverage

__all__ = [
    "new_figure",
    "save_figure",
    "plot_distance_comparison",
    "plot_parallax_residuals",
    "plot_reliability",
    "plot_sigma_mad",
    "plot_zeropoint_trends",
]


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
        ax.set_xlabel(name)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel(r"zero-point $\varpi_0$ [$\mu$as]")
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
