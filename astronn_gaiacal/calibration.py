"""Is the reported zero-point uncertainty calibrated?  Repeat simulate -> train -> zeropoint over seeds.

Each realisation draws an independent mock survey (its own seed) with the
paper's constant zero-point injected, trains a deep ensemble of constant-offset
models on it, and records the recovered zero-point with each uncertainty
estimate the package offers:

``mc``
    the MC-dropout spread of a single model (member 0), astroNN's own estimate;
``mc_mean``
    the ensemble mean with the members' mean MC-dropout spread only;
``ensemble``
    the ensemble mean with the spread between members in quadrature with the
    mean MC spread: the package's default reported sigma.

The pull of an estimate is ``(recovered - injected) / sigma``.  For a
calibrated sigma, ``|pull| < 1`` for about 68 % and ``|pull| < 2`` for about
95 % of the realisations.
"""
import time

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .constants import PAPER_ZEROPOINT_UAS

__all__ = ["ESTIMATES", "calibration_study", "summarise_pulls", "plot_pulls"]

#: Uncertainty estimates compared by the study (see the module docstring).
ESTIMATES = ("mc", "mc_mean", "ensemble")


def calibration_study(k=10, n_train=3000, epochs=20, ensemble=3, mc_num=50, seed=0, injected=PAPER_ZEROPOINT_UAS * u.uas,
                      model="ApogeeGaiaBCNN", lr=1e-3, progress=True, log=None):
    """Run ``k`` independent simulate -> train -> zeropoint realisations.

    Parameters
    ----------
    k : int
        Number of realisations (independent mock surveys).
    n_train, epochs, ensemble, mc_num : int
        Training stars (S/N > 200), epochs, ensemble members and MC-dropout passes of each realisation.
    seed : int
        Realisation ``i`` uses survey seed ``seed + 1000 i`` and training seeds from ``seed + 1000 i``.
    injected : Quantity
        The constant zero-point injected into the mock Gaia parallaxes.
    model : str
        Registered model class.
    progress : bool
        A tqdm bar over the realisations.
    log : callable, optional
        Receives one line per realisation.

    Returns
    -------
    astropy.table.QTable
        One row per realisation: ``seed``, ``zeropoint`` (ensemble mean), ``member0``
        (member 0's value), ``sigma_<estimate>`` and ``pull_<estimate>`` for each of
        :data:`ESTIMATES`, ``train_s``.  ``meta`` holds the settings.
    """
    from tqdm.auto import tqdm

    from . import pipeline
    from .simulate import simulate_train_test

    for name, value in (("k", k), ("n_train", n_train), ("epochs", epochs), ("ensemble", ensemble), ("mc_num", mc_num)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ensemble < 2:
        raise ValueError("ensemble must be >= 2 to estimate the spread between members")
    injected = u.Quantity(injected)
    if injected.unit.physical_type != "angle":
        raise u.UnitTypeError(f"injected must be an angle (e.g. uas), got unit {injected.unit}")
    inj = float(injected.to_value(u.uas))

    rows = []
    for i in tqdm(range(k), desc="calibration study", unit="realisation", disable=not progress):
        s = seed + 1000 * i
        train, _ = simulate_train_test(n_train, 1, seed=s, zeropoint=injected)
        t = time.time()
        net, _ = pipeline.train(train, model=model, offset="constant", epochs=epochs, ensemble=ensemble, lr=lr, seed=s,
                                progress=False)
        train_s = time.time() - t
        value, sigma, parts = net.zeropoint(mc_num=mc_num, components=True)
        m0_value, m0_sigma = net.members[0].zeropoint(mc_num=mc_num)
        row = {
            "seed": s,
            "zeropoint": value.to_value(u.uas),
            "member0": m0_value.to_value(u.uas),
            "sigma_mc": m0_sigma.to_value(u.uas),
            "sigma_mc_mean": parts["mc"].to_value(u.uas),
            "sigma_ensemble": sigma.to_value(u.uas),
            "train_s": train_s,
        }
        row["pull_mc"] = (row["member0"] - inj) / row["sigma_mc"]
        row["pull_mc_mean"] = (row["zeropoint"] - inj) / row["sigma_mc_mean"]
        row["pull_ensemble"] = (row["zeropoint"] - inj) / row["sigma_ensemble"]
        rows.append(row)
        if log is not None:
            log(f"realisation {i + 1}/{k} (seed {s}): {row['zeropoint']:.2f} +- {row['sigma_ensemble']:.2f} uas "
                f"(pull {row['pull_ensemble']:+.2f}); member 0 {row['member0']:.2f} +- {row['sigma_mc']:.2f} uas "
                f"(pull {row['pull_mc']:+.2f})")
    table = QTable(rows=[[r[c] for c in rows[0]] for r in rows], names=list(rows[0]))
    for col in ("zeropoint", "member0", "sigma_mc", "sigma_mc_mean", "sigma_ensemble"):
        table[col].unit = u.uas
    table["train_s"].unit = u.s
    table.meta.update(k=k, n_train=n_train, epochs=epochs, ensemble=ensemble, mc_num=mc_num, seed=seed,
                      injected_uas=inj, model=model, lr=lr)
    return table


def summarise_pulls(table):
    """Pull statistics per estimate: fraction within 1 and 2 sigma, mean and rms pull, median sigma.

    Parameters
    ----------
    table : QTable
        As returned by :func:`calibration_study`.

    Returns
    -------
    dict
        ``{estimate: {"frac_within_1": ..., "frac_within_2": ..., "mean_pull": ..., "rms_pull": ...,
        "median_sigma_uas": ..., "calibrated": bool}}``; ``calibrated`` applies the acceptance
        test ``0.53 <= frac_within_1 <= 0.83`` and ``frac_within_2 >= 0.9``.
    """
    out = {}
    for est in ESTIMATES:
        pull = np.asarray(table[f"pull_{est}"], dtype=float)
        within1, within2 = float(np.mean(np.abs(pull) < 1)), float(np.mean(np.abs(pull) < 2))
        out[est] = {
            "frac_within_1": within1,
            "frac_within_2": within2,
            "mean_pull": float(np.mean(pull)),
            "rms_pull": float(np.sqrt(np.mean(pull**2))),
            "median_sigma_uas": float(np.median(u.Quantity(table[f"sigma_{est}"]).to_value(u.uas))),
            "calibrated": bool(0.53 <= within1 <= 0.83 and within2 >= 0.9),
        }
    return out


def plot_pulls(table, path):
    """Histogram of the pulls of each estimate against the unit Gaussian (PNG).

    Returns
    -------
    str
        ``path``.
    """
    from .plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, len(ESTIMATES), figsize=(4 * len(ESTIMATES), 3.4), sharey=True)
    grid = np.linspace(-5, 5, 201)
    for ax, est in zip(axes, ESTIMATES):
        pull = np.asarray(table[f"pull_{est}"], dtype=float)
        ax.hist(np.clip(pull, -5, 5), bins=np.linspace(-5, 5, 21), density=True, alpha=0.6, label=f"{len(pull)} runs")
        ax.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k-", label="N(0, 1)")
        ax.set(xlabel=f"pull ({est})", title=f"{est}: rms {np.sqrt(np.mean(pull**2)):.2f}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density")
    fig.suptitle(f"zero-point pulls, injected {table.meta.get('injected_uas', np.nan):.1f} uas", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
