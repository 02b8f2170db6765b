"""Figures like the paper's, written as PNG files (matplotlib, Agg backend).

Every function takes plain arrays or Quantities, writes one PNG atomically and
returns its path.
"""
import numpy as np
from astropy import units as u

from .io.atomic import atomic_path
from .constants import MAGIC_NUMBER


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _values(x, unit=None):
    if isinstance(x, u.Quantity):
        x = x.to_value(unit) if unit is not None else x.value
    x = np.asarray(x, dtype=float)
    return np.where(x == MAGIC_NUMBER, np.nan, x)


def _save(fig, path):
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    _plt().close(fig)
    return str(path)


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
    plt = _plt()
    gaia = _values(gaia_parallax, u.mas)
    fig, axes = plt.subplots(1, len(nn_parallax), figsize=(5 * len(nn_parallax), 4), sharey=True, squeeze=False)
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
    return _save(fig, path)


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
        (e.g. :meth:`~astronn_gaiacal.models.GaiaCalBCNNBase.refit_zeropoint_trend`), binned like the model;
        a dict ``{name: (zeropoint, error)}`` gives each panel its own (one fit per feature).
    """
    plt = _plt()
    zp, err = _values(zeropoint, u.uas), _values(zeropoint_error, u.uas)
    fig, axes = plt.subplots(1, len(features), figsize=(4.5 * len(features), 3.8), sharey=True, squeeze=False)
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
    return _save(fig, path)


def plot_sigma_mad(labels, fractional_residual, path):
    """Paper Fig. 7 style: sigma_MAD and median bias of fractional distance residuals per label bin.

    Parameters
    ----------
    labels : dict
        ``{name: values}``, e.g. Teff, log g, SNR.
    fractional_residual : array_like
        (NN - reference) / reference per star.
    """
    from .metrics import sigma_mad

    plt = _plt()
    r = _values(fractional_residual)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.5 * len(labels), 3.6), sharey=True, squeeze=False)
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
    return _save(fig, path)


def plot_distance_comparison(nn_distance, reference_distance, path, reference_label="Gaia"):
    """NN distance against a reference distance (Gaia inverse parallax, or the truth)."""
    plt = _plt()
    nn = _values(nn_distance, u.kpc)
    ref = _values(reference_distance, u.kpc)
    good = np.isfinite(nn) & np.isfinite(ref) & (ref > 0)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(ref[good], nn[good], s=2, alpha=0.3, rasterized=True)
    if good.any():
        hi = np.nanpercentile(np.concatenate([ref[good], nn[good]]), 99)
        ax.plot([0, hi], [0, hi], color="k", lw=0.8)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
    ax.set_xlabel(f"{reference_label} distance [kpc]")
    ax.set_ylabel("NN distance [kpc]")
    return _save(fig, path)
