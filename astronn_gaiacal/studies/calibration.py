"""Is the reported zero-point uncertainty calibrated?  Repeat simulate -> train -> zeropoint over seeds.

Each realisation draws an independent mock survey (its own seed) with the
paper's constant zero-point injected, trains a deep ensemble of constant-offset
models on it with the demo's recipe (:data:`astronn_gaiacal.studies.configs.CONFIGS`), and
records the recovered zero-point with each estimate the package offers:

``mc``
    member 0's learned offset with its MC-dropout spread: astroNN's own estimate;
``ensemble``
    the members' mean learned offset, with the spread between members in
    quadrature with the mean MC spread;
``refit``
    member 0's maximum-likelihood refit on the training stars with the
    luminosity network held fixed (:mod:`astronn_gaiacal.zeropoint.fit`), with
    its statistical error;
``refit_ensemble``
    the members' mean refit, with the standard error of that mean (members'
    standard deviation over sqrt(K)) in quadrature with the mean statistical error;
``refit_scaled_ensemble``
    as ``refit_ensemble``, but each member's refit also fits a common
    luminosity scale (``fit_scale=True``): the zero-point is the intercept at
    zero parallax, immune to a common fractional luminosity error;
``refit_curved_ensemble``
    as ``refit_scaled_ensemble`` with a term quadratic in the model parallax
    too (``fit_curvature=True``);
``refit_consistency_ensemble``
    as ``refit_ensemble``, with the statistical term multiplied by the
    :func:`~astronn_gaiacal.zeropoint.fit.consistency_factor` of the ensemble's
    mean model parallaxes over four quantiles of model luminosity: when the
    populations' zero-points disagree, a luminosity error the members share is
    there, and the error grows by the disagreement.

Every ensemble estimate leaves out the members whose training failed
(:func:`~astronn_gaiacal.zeropoint.estimates.usable_members`: distances that scatter
several times more than the best member's); the table's ``failed_members``
column counts them.  :func:`reanalyse_study` redoes the refits of a finished
study from its saved files.

The pull of an estimate is ``(recovered - injected) / sigma``.  For a
calibrated sigma, ``|pull| < 1`` for about 68 % and ``|pull| < 2`` for about
95 % of the realisations.  :data:`~astronn_gaiacal.zeropoint.estimates.DEFAULT_ESTIMATE`
is the one the demo and the command line report.
"""
import dataclasses
import os
import time
import warnings

import numpy as np
from astropy import units as u
from astropy.table import QTable
from tqdm.auto import tqdm

from .. import pipeline
from ..constants import DEFAULT_MODEL, PAPER_ZEROPOINT_UAS
from ..io.atomic import atomic_path
from ..plots import new_figure, save_figure
from ..simulate import simulate_train_test
from ..zeropoint.estimates import ENSEMBLE_REFITS, ESTIMATES, ensemble_refits, refits_from_parallaxes
from ..zeropoint.likelihood import likelihood_for_loss
from .configs import CONFIGS

__all__ = ["calibration_study", "reanalyse_study", "summarise_pulls", "plot_pulls", "realisation_path",
           "StudyFileError"]


class StudyFileError(ValueError):
    """A saved realisation file does not belong to the study's table (another seed, other parallaxes)."""


def realisation_path(folder, i):
    """Path of realisation ``i``'s saved arrays, ``<folder>/realisation_<i>.npz`` (see :func:`calibration_study`)."""
    return os.path.join(folder, f"realisation_{i:02d}.npz")


def calibration_study(k=10, n_train=None, epochs=None, ensemble=None, mc_num=None, seed=0,
                      injected=PAPER_ZEROPOINT_UAS * u.uas, model=DEFAULT_MODEL, lr=None, progress=True, log=None,
                      n_jobs=None, weight_averaging=None, save_dir=None, outliers=None, loss=None):
    """Run ``k`` independent simulate -> train -> zeropoint realisations.

    Parameters
    ----------
    k : int
        Number of realisations (independent mock surveys).
    n_train, epochs, ensemble, mc_num : int, optional
        Training stars (S/N > 200), epochs, ensemble members and MC-dropout
        passes of each realisation; default the demo's (:data:`astronn_gaiacal.studies.configs.CONFIGS`).
    seed : int
        Realisation ``i`` uses survey seed ``seed + 1000 i`` and training seeds from ``seed + 1000 i``.
    injected : Quantity
        The constant zero-point injected into the mock Gaia parallaxes.
    model : str
        Registered model class.
    lr : float, optional
        Adam learning rate; default the demo's.
    progress : bool
        A tqdm bar over the realisations.
    log : callable, optional
        Receives one line per realisation.
    n_jobs : int, optional
        Members trained at once (:mod:`astronn_gaiacal.models.workers`; default one per core).
    weight_averaging : float, optional
        Fraction of the last epochs whose weights are averaged; default the demo's.
    save_dir : str, optional
        Also write ``realisation_<i>.npz`` per realisation there (Gaia and true
        parallaxes, errors, G, log g and each member's model parallaxes, mas),
        so that other estimates can be studied without retraining.
    outliers : Outliers, optional
        An outlier population in every mock survey
        (:class:`~astronn_gaiacal.simulate.outliers.Outliers`: binaries,
        mis-matches, Gaia error tails); default none.
    loss : str, optional
        The training loss (e.g. ``'gaia_student_t_nll'``); default the model's.
        The refits use its likelihood.

    Returns
    -------
    astropy.table.QTable
        One row per realisation: ``seed``, ``value_<estimate>``, ``sigma_<estimate>``
        and ``pull_<estimate>`` for each of :data:`~astronn_gaiacal.zeropoint.estimates.ESTIMATES`, ``refit_members``
        (each member's refit value), ``refit_member_spread`` (their standard
        deviation), ``refit_scale`` (the scaled refit's mean luminosity scale), ``train_s``.  ``meta`` holds the
        settings.
    """
    demo = CONFIGS["default"]
    n_train = demo["n_train"] if n_train is None else n_train
    epochs = demo["epochs"] if epochs is None else epochs
    ensemble = demo["ensemble"] if ensemble is None else ensemble
    mc_num = demo["mc_num"] if mc_num is None else mc_num
    lr = demo["lr"] if lr is None else lr
    weight_averaging = demo["weight_averaging"] if weight_averaging is None else weight_averaging

    for name, value in (("k", k), ("n_train", n_train), ("epochs", epochs), ("ensemble", ensemble), ("mc_num", mc_num)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ensemble < 2:
        raise ValueError("ensemble must be >= 2 to estimate the spread between members")
    injected = u.Quantity(injected)
    if injected.unit.physical_type != "angle":
        raise u.UnitTypeError(f"injected must be an angle (e.g. uas), got unit {injected.unit}")
    inj = float(injected.to_value(u.uas))

    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
    rows = []
    for i in tqdm(range(k), desc="calibration study", unit="realisation", disable=not progress):
        s = seed + 1000 * i
        train, _ = simulate_train_test(n_train, 1, seed=s, zeropoint=injected, outliers=outliers)
        t = time.time()
        net, _ = pipeline.train(train, model=model, offset="constant", epochs=epochs, ensemble=ensemble, lr=lr, seed=s,
                                progress=False, n_jobs=n_jobs, weight_averaging=weight_averaging,
                                **({} if loss is None else {"loss": loss}))
        train_s = time.time() - t
        net.mc_num = mc_num
        m0_value, m0_sigma = net.members[0].zeropoint(mc_num=mc_num, estimate="learned")
        variants, model_plx = ensemble_refits(net.members, train["spectra"], train["parallax"], train["parallax_error"],
                                              train.corrected_mag())
        value, sigma = net.without(variants["failed"]).zeropoint(mc_num=mc_num, estimate="learned")
        if save_dir is not None:
            with atomic_path(realisation_path(save_dir, i), overwrite=True) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, parallax=train["parallax"], parallax_error=train["parallax_error"],
                                        true_parallax=train["true_parallax"], phot_g_mean_mag=train["phot_g_mean_mag"],
                                        logg=train["logg"], magnitude=train.corrected_mag(), model_parallax=model_plx,
                                        seed=s)
        row = {"seed": s}
        _set_estimate(row, "mc", m0_value, m0_sigma, inj)
        _set_estimate(row, "ensemble", value, sigma, inj)
        _set_refits(row, variants, inj)
        row["train_s"] = train_s
        rows.append(row)
        if log is not None:
            log(f"realisation {i + 1}/{k} (seed {s}): " + "; ".join(
                f"{est} {row[f'value_{est}']:.2f} +- {row[f'sigma_{est}']:.2f} uas (pull {row[f'pull_{est}']:+.2f})"
                for est in ESTIMATES))
    table = QTable(rows=[[r[c] for c in rows[0]] for r in rows], names=list(rows[0]))
    for est in ESTIMATES:
        table[f"value_{est}"].unit = u.uas
        table[f"sigma_{est}"].unit = u.uas
    table["refit_members"].unit = u.uas
    table["refit_member_spread"].unit = u.uas
    table["train_s"].unit = u.s
    table.meta.update(k=k, n_train=n_train, epochs=epochs, ensemble=ensemble, mc_num=mc_num, seed=seed,
                      injected_uas=inj, model=model, lr=lr, weight_averaging=weight_averaging,
                      outliers=None if outliers is None else dataclasses.asdict(outliers), loss=loss)
    return table


def _set_estimate(row, est, value, sigma, injected_uas):
    row[f"value_{est}"] = value.to_value(u.uas)
    row[f"sigma_{est}"] = sigma.to_value(u.uas)
    row[f"pull_{est}"] = (row[f"value_{est}"] - injected_uas) / row[f"sigma_{est}"]


def _set_refits(row, variants, injected_uas):
    """The refit columns of a study row from :func:`refits_from_parallaxes`' dict."""
    refits = variants["members"]
    _set_estimate(row, "refit", refits[0].value, refits[0].error, injected_uas)
    for name in ENSEMBLE_REFITS:
        _set_estimate(row, name, variants[name][0].value, variants[name][0].error, injected_uas)
    row["refit_members"] = np.array([f.value.to_value(u.uas) for f in refits])
    row["refit_member_spread"] = variants["refit_ensemble"][1]["member_spread"].to_value(u.uas)
    row["refit_scale"] = variants["refit_scaled_ensemble"][0].scale
    row["consistency_factor"] = variants["refit_consistency_ensemble"][1]["consistency_factor"]
    row["failed_members"] = len(variants["failed"])


def reanalyse_study(table, folder):
    """Recompute a study's refit estimates from its saved ``realisation_<i>.npz`` (no retraining).

    Use it when the refit estimates change (e.g. the screening of failed
    members, :func:`~astronn_gaiacal.zeropoint.estimates.usable_members`): the
    members' model parallaxes are saved, so only the fits are redone.  The
    ``mc`` and ``ensemble`` columns (the networks' learned offsets) are kept.

    Parameters
    ----------
    table : QTable
        The study's table (``calibration_study.ecsv``), rows in realisation order.
    folder : str
        The folder holding its ``realisation_<i>.npz``.  Files written before
        magnitudes were saved get them back by simulating the realisation's
        survey again from its seed (the simulation is deterministic).

    Returns
    -------
    QTable
        A copy with the refit columns recomputed and ``failed_members`` set.

    Raises
    ------
    FileNotFoundError
        A realisation file is missing.
    StudyFileError
        A file belongs to another realisation (seed or parallaxes differ).
    """
    inj = float(table.meta["injected_uas"])
    out = table.copy()
    if "failed_members" not in out.colnames:
        out["failed_members"] = np.zeros(len(out), int)
    for i in range(len(out)):
        path = realisation_path(folder, i)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path!r} is missing: cannot reanalyse realisation {i}")
        with np.load(path) as saved:
            d = {key: saved[key] for key in saved.files}
        if int(d["seed"]) != int(out["seed"][i]):
            raise StudyFileError(f"{path!r} holds seed {int(d['seed'])}, the table's row {i} seed "
                                 f"{int(out['seed'][i])}")
        if "magnitude" not in d:
            train, _ = simulate_train_test(len(d["parallax"]), 1, seed=int(d["seed"]), zeropoint=inj * u.uas,
                                           progress=False, outliers=table.meta.get("outliers"))
            if not np.array_equal(np.asarray(train["parallax"]), d["parallax"]):
                raise StudyFileError(f"simulating seed {int(d['seed'])} again does not give the parallaxes of "
                                     f"{path!r}")
            d["magnitude"] = train.corrected_mag()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the count goes into the table instead
            variants = refits_from_parallaxes(d["model_parallax"], d["parallax"] * u.mas, d["parallax_error"] * u.mas,
                                              d["magnitude"], likelihood_for_loss(table.meta.get("loss")))
        row = {}
        _set_refits(row, variants, inj)
        for key, value in row.items():
            out[key][i] = value * out[key].unit if getattr(out[key], "unit", None) is not None else value
    return out


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
    fig = new_figure(figsize=(4 * len(ESTIMATES), 3.4))
    axes = fig.subplots(1, len(ESTIMATES), sharey=True)
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
    return save_figure(fig, path, bbox_inches="tight")
