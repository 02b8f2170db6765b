"""The main job on built-in data: simulate, train the three offset variants, calibrate, infer, report.

A mock APOGEE x Gaia DR2 survey (:mod:`astronn_gaiacal.simulate`) is split as
in the paper into a high-S/N training set and a low-S/N test set.  Two Gaia
catalogues are drawn for the same stars: one with a constant zero-point
(-52.3 uas, the paper's value) and one with a zero-point that varies with G
(the paper's eq. 7 shape).  The no-offset and constant models are trained on
the first.  The multivariate model is calibrated on the second in two stages
(``train --luminosity-from``): its offset network is trained with the luminosity
network of the first constant-ensemble member held fixed.  The two catalogues
share their stars and spectra, so that network is a luminosity model of the same
stars; at demo size a joint fit cannot tell a G trend of the zero-point from a
luminosity error and follows the injected trend poorly (docs/calibration.rst).
Then everything is evaluated on the test set and written to ``out``.

The constant zero-point is reported two ways: the offset the networks learned
(the paper's estimate) and the maximum-likelihood refit on the training stars
with each luminosity network held fixed (:mod:`astronn_gaiacal.zeropoint.fit`).
A constant-ensemble member whose training failed (its distances scatter several
times more than the best member's, :func:`~astronn_gaiacal.zeropoint.estimates.failed_members`)
is left out of the zero-point, the saved ensemble and the catalogue, and the
report names it.
The headline value is :data:`astronn_gaiacal.zeropoint.estimates.DEFAULT_ESTIMATE`,
the one whose uncertainty the calibration study found calibrated
(docs/calibration.rst).  Outputs:

* ``report.json`` / ``report.txt``: recovered vs injected zero-point, distance
  accuracy (sigma_MAD and median bias of fractional residuals, paper eq. 10);
* ``catalogue.fits``: the Table-1 catalogue of the test set (constant model);
* ``fig3_parallax_residuals.png``, ``fig4_zeropoint_trends.png``,
  ``fig4_zeropoint_2d.png`` (the multivariate model's median zero-point in bins
  of G against BP-RP and Teff, and minus the injected one),
  ``fig7_sigma_mad.png``, ``distance_comparison.png``;
* ``reliability.png`` and the report's ``uncertainties``: observed against
  nominal coverage of the constant model's distance uncertainties on the test
  set, per S/N bin and population (giants log g < 3.5, dwarfs), with the
  uncertainty scale fitted on the validation stars
  (:mod:`~astronn_gaiacal.models.calibration`);
* ``models/``: the trained model folders.
"""
import functools
import json
import os
import time

import numpy as np
from astropy import units as u

from .. import pipeline, plots, summaries
from ..constants import DEFAULT_MODEL, PAPER_ZEROPOINT_UAS, ZEROPOINT_CONVENTION
from ..io.atomic import atomic_path
from ..io.catalogue import catalogue_from_dataset, write_catalogue
from ..metrics import accuracy
from ..models import DeepEnsemble
from ..models.calibration import VALIDATION_SEED, coverage
from ..models.convergence import convergence_note
from ..models.workers import TrainJob, default_jobs, train_jobs
from ..simulate import paper_quadratic_zeropoint, simulate_train_test
from ..zeropoint.calibrated import CalibratedZeropoint
from ..zeropoint.estimates import DEFAULT_ESTIMATE, ENSEMBLE_REFITS, FAILED_SCATTER_RATIO, ensemble_refits
from ..zeropoint.trends import QuadraticTrend, fit_quadratic_trend
from .configs import CONFIGS

__all__ = ["CONFIGS", "injected_trend", "run_demo"]


def injected_trend(columns):
    """Zero-point injected in the multivariate demo: ``1.18(G-16)^2 - 0.92(G-16) - 55.49`` uas, G clipped to 11-17."""
    return paper_quadratic_zeropoint("phot_g_mean_mag")(columns)


def _with_zeropoint(ds, zeropoint_mas, seed):
    """Same stars and spectra, a new Gaia catalogue parallax with another injected zero-point."""
    rng = np.random.default_rng(seed)
    plx = ds["true_parallax"] + zeropoint_mas + ds["parallax_error"] * rng.standard_normal(len(ds))
    return ds.with_columns(parallax=plx * u.mas, true_zeropoint=zeropoint_mas * u.mas)


def _accuracy_block(fakemag, ds, select):
    block = {}
    giants = ds["logg"] < 3.5
    good_gaia = ds["parallax_error"] / np.abs(ds["parallax"]) < 0.05
    for name, sel in (("all", select), ("giants", select & giants), ("giants_gaia_err_lt_5pct", select & giants & good_gaia)):
        if sel.sum() == 0:
            continue
        acc = accuracy(fakemag[sel], ds["true_fakemag"][sel])
        block[name] = {"n": acc["n"], "sigma_mad": acc["sigma_mad"], "median_bias": acc["median_bias"]}
        if name == "giants_gaia_err_lt_5pct":
            vs_gaia = accuracy(1.0 / ds["parallax"][sel], 1.0 / (fakemag[sel] * 10 ** (-0.2 * ds.corrected_mag()[sel])))
            block[name]["vs_gaia_sigma_mad"] = vs_gaia["sigma_mad"]
            block[name]["vs_gaia_median_bias"] = vs_gaia["median_bias"]
    return block


#: S/N bins of the coverage report (the test set is S/N < 200).
SNR_BINS = (0.0, 50.0, 100.0, 200.0, np.inf)
#: log g below which a star counts as a giant.
GIANT_LOGG = 3.5


def _distance_errors(fakemag, fakemag_error, ds):
    """Residual (NN - true) distance and the reported distance uncertainty, pc (first-order propagation)."""
    dist = 1000.0 * 10 ** (0.2 * ds.corrected_mag()) / fakemag
    return dist - ds["true_distance"], dist * fakemag_error / fakemag


#: The issue's target: 68 +- 5 % within 1 sigma and 95 +- 3 % within 2 sigma, checked for groups of this many stars.
TARGET_1SIGMA, TARGET_2SIGMA, TARGET_MIN_STARS = (0.6827, 0.05), (0.9545, 0.03), 200


def within_target(cov):
    """Whether a :func:`~astronn_gaiacal.models.calibration.coverage` dict is within the target (None: too few stars)."""
    if cov["n"] < TARGET_MIN_STARS:
        return None
    return bool(abs(cov["within_1sigma"] - TARGET_1SIGMA[0]) <= TARGET_1SIGMA[1]
                and abs(cov["within_2sigma"] - TARGET_2SIGMA[0]) <= TARGET_2SIGMA[1])


def coverage_groups(ds):
    """``{name: selection}`` of the coverage report: all stars, each S/N bin, giants and dwarfs, and both splits."""
    giants = np.asarray(ds["logg"]) < GIANT_LOGG
    snr = np.asarray(ds["snr"])
    groups = {"all": np.ones(len(ds), bool), "giants": giants, "dwarfs": ~giants}
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:]):
        in_bin = (snr >= lo) & (snr < hi)
        if in_bin.any():
            name = f"snr_{lo:g}_{hi:g}"
            groups[name] = in_bin
            groups[f"giants_{name}"] = in_bin & giants
            groups[f"dwarfs_{name}"] = in_bin & ~giants
    return {k: v for k, v in groups.items() if v.any()}


def distance_coverage(fakemag, fakemag_error, ds):
    """Coverage of the reported distance uncertainties against the true distances, per group of :func:`coverage_groups`.

    Returns
    -------
    dict
        ``{group: coverage dict}`` (:func:`~astronn_gaiacal.models.calibration.coverage`), each with
        ``within_target`` (:func:`within_target`).
    """
    resid, sigma = _distance_errors(np.asarray(fakemag, float), np.asarray(fakemag_error, float), ds)
    out = {name: coverage(resid[sel], sigma[sel]) for name, sel in coverage_groups(ds).items()}
    return {name: {**cov, "within_target": within_target(cov)} for name, cov in out.items()}


def uncertainty_coverages(model, fit, ds):
    """Coverage of a model's distance errors on ``ds`` as predicted (:func:`~astronn_gaiacal.pipeline.predict_stars`:
    the scale at each star's S/N), with the constant scale instead, and uncalibrated.

    Returns
    -------
    dict
        ``coverage``, ``coverage_constant_scale``, ``coverage_uncalibrated``: each :func:`distance_coverage`.
    """
    k_snr = model.uncertainty_scale_at(np.asarray(ds["snr"], float))  # what predict_stars applied
    sigma = np.asarray(fit["fakemag_error"], float)
    return {"coverage": distance_coverage(fit["fakemag"], sigma, ds),
            "coverage_constant_scale": distance_coverage(fit["fakemag"], sigma / k_snr * model.uncertainty_scale, ds),
            "coverage_uncalibrated": distance_coverage(fit["fakemag"], sigma / k_snr, ds)}


def _trend_line(t):
    """One quadratic of a trend fit's JSON with its errors and validity range (the training stars' central 98 %)."""
    return (f"{t['feature']}: {t['a']:.3g}({t['a_err']:.2g})(x-{t['pivot']:.4g})^2 + {t['b']:.3g}({t['b_err']:.2g})"
            f"(x-{t['pivot']:.4g}) + {t['c']:.3g}({t['c_err']:.2g}) uas, valid {t['valid_range'][0]:.3g}.."
            f"{t['valid_range'][1]:.3g}")


def _noise_line(floor):
    if floor is None:
        return "  training spectra used as given (no S/N degradation)"
    return f"  training spectra degraded each step to an S/N between {floor:g} and their own"


def _convergence_line(verdicts):
    bad = {name: v for name, v in verdicts.items() if v is not None and not v["converged"]}
    if not bad:
        return "  every training converged (its loss no longer falling, and below that of a fit without the spectra)"
    return "  " + "; ".join(f"{name} model {convergence_note(v)}" for name, v in bad.items())


def _text_report(r):
    zc = r["zeropoint"]["constant"]
    net, refit = zc["ensemble"], zc["refit_ensemble"]
    lines = [
        "astronn-gaiacal demo: joint spectro-photometric distances and Gaia parallax zero-point",
        f"  mock survey: {r['settings']['n_train']} training stars (S/N > 200), {r['settings']['n_test']} test stars (S/N < 200)",
        _noise_line(r["settings"].get("training_noise_snr")),
        _convergence_line(r.get("training_convergence") or {}),
        "",
        f"Zero-point (convention: {ZEROPOINT_CONVENTION})",
        f"  injected constant        {zc['injected_uas']:8.2f} uas",
        f"  recovered (constant)     {zc['value_uas']:8.2f} +- {zc['error_uas']:.2f} uas  (pull {zc['pull']:+.2f}; "
        f"estimate '{zc['estimate']}')",
        f"    refit, network fixed   {refit['value_uas']:8.2f} +- {refit['error_uas']:.2f} uas  (statistical "
        f"{refit['statistical_error_uas']:.2f}, ensemble {refit['ensemble_error_uas']:.2f} = t x member spread "
        f"{refit['member_spread_uas']:.2f}/sqrt(K); luminosity scatter {100 * refit['scatter']:.1f}%; "
        f"pull {refit['pull']:+.2f})",
        f"    learned offset         {net['value_uas']:8.2f} +- {net['error_uas']:.2f} uas  (MC dropout "
        f"{net['mc_error_uas']:.2f}, ensemble {net['ensemble_error_uas']:.2f}; pull {net['pull']:+.2f})",
    ]
    screening = zc.get("screening") or {}
    if screening.get("dropped"):
        lines.append(f"    constant-ensemble member(s) {screening['dropped']} left out: held-out likelihood worse by "
                     + ", ".join(f"{screening['significance'][i]:.1f}" for i in screening["dropped"])
                     + f" standard errors ({screening['n_stars']} validation stars; threshold {screening['threshold']:g})")
    if zc.get("failed_members"):
        lines.append(f"    constant-ensemble members {zc['failed_members']} failed to train (luminosity scatter over "
                     f"{FAILED_SCATTER_RATIO:g}x the best member's): left out of the zero-point, models and catalogue")
    for name, label in (("refit_scaled_ensemble", "refit, free scale"), ("refit_curved_ensemble", "refit, scale+curve")):
        v = zc[name]
        lines.append(f"    {label:<22} {v['value_uas']:8.2f} +- {v['error_uas']:.2f} uas  (scale {v['scale']:.4f}; "
                     f"pull {v['pull']:+.2f})")
    v = zc["refit_consistency_ensemble"]
    lines.append(f"    {'refit, consistency':<22} {v['value_uas']:8.2f} +- {v['error_uas']:.2f} uas  (luminosity groups "
                 f"disagree by a factor {v['consistency_factor']:.2f}; pull {v['pull']:+.2f})")
    mv = r["zeropoint"]["multivariate"]
    lines.append(f"  multivariate model: offset network trained with {mv['luminosity']}")
    if 0 in zc.get("failed_members", []) or 0 in screening.get("dropped", []):
        lines.append("    warning: that member failed to train or was left out by the screening, so the multivariate offsets "
                     "are not reliable")
    lines.append(
        f"  multivariate (estimate '{mv['per_star_estimate']}') vs injected trend in G: slope "
        f"{mv['slope_uas_per_mag']:+.2f} uas/mag (injected {mv['injected_slope_uas_per_mag']:+.2f}); rms difference "
        f"{mv['rms_difference_uas']:.2f} uas; its quadratics on the test stars inside the training range:"
    )
    for name, trend in mv.get("quadratic_trends", {}).items():
        lines.append(f"    {name}: {trend['a']:.3g}(x-{trend['pivot']:g})^2 + {trend['b']:.3g}(x-{trend['pivot']:g}) "
                     f"+ {trend['c']:.3g} uas, valid {trend['valid_range'][0]:.3g}..{trend['valid_range'][1]:.3g}")
    cal = mv.get("calibrated_trend")
    if cal:
        lines.append(f"  calibrated trend stored in models/multivariate (estimate '{cal['estimate']}', refitted on the "
                     f"{cal['data']}, {cal['n_stars']} stars, network fixed, luminosity scale {cal['scale']:.4f}):")
        lines += [f"    {_trend_line(t)}" for t in cal["trends"].values()]
    rf = mv["refit"]
    lines.append(
        f"  refit, network fixed, one quadratic per feature: G slope "
        f"{rf['slope_uas_per_mag']:+.2f} uas/mag; rms difference {rf['rms_difference_uas']:.2f} uas "
        f"(median error {rf['median_error_uas']:.2f} uas)"
    )
    lines += [f"    {_trend_line(t)}" for t in rf["trends"].values()]
    no = r["no_offset"]
    lines += [
        f"  no-offset model: median NN - true parallax for parallax < 0.5 mas {no['median_residual_small_parallax_uas']:+.1f} uas "
        f"(constant model {r['zeropoint']['constant']['median_residual_small_parallax_uas']:+.1f} uas)",
        "",
        "Distances on the test set (fractional residuals vs truth: sigma_MAD, median bias)",
    ]
    for model, block in r["distances"].items():
        for sample, acc in block.items():
            extra = ""
            if "vs_gaia_sigma_mad" in acc:
                extra = f"; vs Gaia {100 * acc['vs_gaia_sigma_mad']:.1f}%"
            lines.append(f"  {model:<13} {sample:<24} n={acc['n']:<6} sigma_MAD {100 * acc['sigma_mad']:5.1f}%  "
                         f"bias {100 * acc['median_bias']:+5.1f}%{extra}")
    unc = r["uncertainties"]
    cal = unc["calibration"]
    lines += ["", "Distance uncertainties of the constant model on the test set (|NN - true| < 1 / 2 dist_error; "
              "Gaussian: 68.3% / 95.4%)"]
    if cal["uncertainty_calibrated"]:
        c = cal["uncertainty_calibration"]
        lines.append(f"  uncertainty scale {c['scale']:.3f} +- {c['scale_error']:.3f}, fitted on {c['stars']} "
                     f"(Gaia z-score sigma_MAD {c['robust_std_before']:.2f} -> {c['robust_std_after']:.2f})")
        snr = c.get("snr_dependence")
        if snr:
            k_at = ", ".join(f"{(snr['scale_inf'] ** 2 + (snr['noise'] / v) ** 2) ** 0.5:.2f} at {v}" for v in (50, 100, 200))
            lines.append(f"  at the star's S/N: k^2 = ({snr['scale_inf']:.3f} +- {snr['scale_inf_error']:.3f})^2 + "
                         f"(({snr['noise']:.1f} +- {snr['noise_error']:.1f}) / S/N)^2 (k = {k_at}); the same stars "
                         f"with noise injected down to S/N {snr['snr_range'][0]:g}")
        for b in (c.get("luminosity_check") or {}).get("bins", []):
            lines.append(f"  luminosity check, log10 fakemag {b['log10_fakemag'][0]:.2f}-{b['log10_fakemag'][1]:.2f} "
                         f"(n={b['n']}): Gaia/NN parallax - 1 = {100 * b['bias']:+.1f} +- {100 * b['bias_error']:.1f}%"
                         f"{' FLAGGED' if b['flagged'] else ''}")
    else:
        lines.append("  UNCALIBRATED: the network's own uncertainties (scale 1)")
    lines.append(f"  target {100 * TARGET_1SIGMA[0]:.0f} +- {100 * TARGET_1SIGMA[1]:.0f}% / {100 * TARGET_2SIGMA[0]:.0f} +- "
                 f"{100 * TARGET_2SIGMA[1]:.0f}% in groups of >= {TARGET_MIN_STARS} stars (MISS: outside)")
    for group, cov in unc["coverage"].items():
        raw, const = unc["coverage_uncalibrated"][group], unc["coverage_constant_scale"][group]
        flag = {None: "", True: "", False: " MISS"}[cov["within_target"]]
        lines.append(f"  {group:<22} n={cov['n']:<6} {100 * cov['within_1sigma']:5.1f}% / {100 * cov['within_2sigma']:5.1f}%"
                     f"{flag:<5}  (constant scale {100 * const['within_1sigma']:5.1f}% / {100 * const['within_2sigma']:5.1f}%;"
                     f" uncalibrated {100 * raw['within_1sigma']:5.1f}% / {100 * raw['within_2sigma']:5.1f}%)")
    for name, label, note in (("zeropoint_multivariate", "multivariate model", ""),
                              ("zeropoint_refit_g", "refit in G", "; one fit: its error moves every star alike")):
        cov = unc[name]
        lines.append(f"  per-star zero-point, {label:<18} vs injected: {100 * cov['within_1sigma']:5.1f}% / "
                     f"{100 * cov['within_2sigma']:5.1f}% within 1 / 2 sigma (sigma_MAD of pulls "
                     f"{cov['robust_std_z']:.2f}{note})")
    lines += ["", f"Wall time {r['timing_s']['total']:.0f} s; files in {r['out']}"]
    return "\n".join(lines)


def run_demo(out, full=False, seed=0, progress=True, log=print, config=None, n_jobs=None, final_out=None):
    """Run the demo and write its outputs into the folder ``out``.

    Parameters
    ----------
    out : str
        Output folder (created; existing files with the same names are replaced).
    full : bool
        The paper's scale (35,112 / 33,468 stars, 40 epochs); hours on a CPU.
    seed : int
    progress : bool
    log : callable
        Receives one line per step.
    config : dict, optional
        Override entries of :data:`~astronn_gaiacal.studies.configs.CONFIGS` (e.g. for tests).
    n_jobs : int, optional
        Trainings run at once (:mod:`astronn_gaiacal.models.workers`); default one per core.
    final_out : str, optional
        The folder the report names, when ``out`` is a temporary folder renamed afterwards.

    Returns
    -------
    dict
        The report (also written to ``report.json``).
    """
    base = CONFIGS["full" if full else "default"]
    cfg = dict(base, **(config or {}))
    for key in ("epochs_no_offset", "epochs_multivariate"):
        if "epochs" in (config or {}) and key not in config:
            cfg[key] = max(1, round(cfg["epochs"] * base[key] / base["epochs"]))
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    timing = {}

    log(f"simulating {cfg['n_train']} training + {cfg['n_test']} test stars")
    train, test = simulate_train_test(cfg["n_train"], cfg["n_test"], seed=seed, zeropoint=PAPER_ZEROPOINT_UAS * u.uas,
                                      progress=progress)
    train_mv = _with_zeropoint(train, injected_trend(train).to_value(u.mas), seed + 101)
    test_mv = _with_zeropoint(test, injected_trend(test).to_value(u.mas), seed + 102)
    timing["simulate"] = time.time() - t0

    # ---- all trainings are independent: run them side by side, one worker process per core
    n_members = cfg["ensemble"]
    specs = [("constant", "constant", train, cfg["epochs"], seed + k, None) for k in range(n_members)]
    specs += [("multivariate", "multivariate", train_mv, cfg["epochs_multivariate"], seed, 0),  # stage 2 of member 0
              ("no_offset", "none", train, cfg["epochs_no_offset"], seed, None)]
    jobs = []
    for name, offset, ds, epochs, job_seed, source in specs:
        factory = functools.partial(pipeline.configured_model, DEFAULT_MODEL, offset, None, lr=cfg["lr"],
                                    epochs=epochs, weight_averaging=cfg["weight_averaging"])
        fit_kwargs = pipeline.fit_arguments(factory(), ds)
        if offset == "constant":  # the ensemble's members hold out the same stars (its uncertainty calibration)
            fit_kwargs["validation_seed"] = VALIDATION_SEED
            fit_kwargs["calibrate_zeropoint"] = False  # the ensemble's refit below is the calibration
        jobs.append(TrainJob(factory, job_seed, fit_kwargs, name, luminosity_from_job=source))
    t = time.time()
    workers = default_jobs(len(jobs)) if n_jobs is None else n_jobs
    log(f"training the no-offset model, a {n_members}-member constant ensemble and the multivariate model "
        f"({len(jobs)} trainings, {workers} at a time)")
    trained = train_jobs(jobs, n_jobs=workers, progress=progress)
    timing["train"] = time.time() - t
    # ---- zero-point refit with the luminosity networks held fixed; members whose training failed are left out
    t = time.time()
    log("refitting the zero-point on the training stars with the luminosity networks fixed")
    members = DeepEnsemble(trained[:n_members]).screened(train["spectra"], train["parallax"], train["parallax_error"],
                                                         train.corrected_mag())  # the held-out likelihood
    variants, _ = ensemble_refits(members.members, train["spectra"], train["parallax"], train["parallax_error"],
                                  train.corrected_mag())
    constant = members.without(variants["failed"]) if variants["failed"] else members
    kept = [i for i in range(n_members) if i not in (members.screening or {}).get("dropped", [])]
    failed = [kept[j] for j in variants["failed"]]  # as indices of the members trained
    models = {"no_offset": trained[-1],
              "constant": constant if len(constant) > 1 else constant.members[0],
              "multivariate": trained[n_members]}
    try:  # the combined uncertainty, on the validation stars all members held out, with its S/N dependence
        models["constant"].calibrate_uncertainties(train["spectra"], train["parallax"], train["parallax_error"],
                                                   magnitude=train.corrected_mag(), spectra_err=train["spectra_err"],
                                                   snr=train["snr"])
    except ValueError as exc:  # e.g. too few validation stars: reported as uncalibrated
        log(f"warning: the constant ensemble's uncertainties are left uncalibrated: {exc}")
    # the calibrated zero-point the folder carries: the default estimate, computed above on the training stars
    models["constant"].zeropoint_calibration = CalibratedZeropoint(DEFAULT_ESTIMATE, variants[DEFAULT_ESTIMATE][0])
    timing["refit"] = time.time() - t
    for name, model in models.items():
        model.save(os.path.join(out, "models", name), overwrite=True)
    fits = {}

    t = time.time()
    log("inferring the test set with MC dropout")
    for name, model in models.items():
        fits[name] = pipeline.predict_stars(model, test_mv if name == "multivariate" else test, mc_num=cfg["mc_num"])
    timing["predict"] = time.time() - t

    # ---- zero-point: the learned offset, and the refits
    injected = PAPER_ZEROPOINT_UAS
    t = time.time()
    constant = DeepEnsemble.of(models["constant"])
    net_value, net_error, parts = constant.zeropoint(mc_num=cfg["mc_num"], components=True, estimate="learned")
    feats = models["multivariate"].offset_features
    # one quadratic per feature (the paper's eqs. 7-9), scale fixed: the luminosity network is the constant model's
    mv_refits = models["multivariate"].refit_zeropoint_trend(
        train_mv["spectra"], train_mv["parallax"], train_mv["parallax_error"], {f: train_mv[f] for f in feats},
        magnitude=train_mv.corrected_mag(), fit_scale=False, separately=True)
    timing["refit"] += time.time() - t
    estimates = {  # named as in the calibration study
        "ensemble": {
            "value_uas": float(net_value.to_value(u.uas)),
            "error_uas": float(net_error.to_value(u.uas)),
            "mc_error_uas": float(parts["mc"].to_value(u.uas)),
            "ensemble_error_uas": float(parts["ensemble"].to_value(u.uas)),
        },
        **{name: {
            **fit.to_dict(),
            "statistical_error_uas": float(parts["statistical"].to_value(u.uas)),
            "ensemble_error_uas": float(parts["ensemble"].to_value(u.uas)),
            "member_spread_uas": float(parts["member_spread"].to_value(u.uas)),
            **({"consistency_factor": float(parts["consistency_factor"])} if "consistency_factor" in parts else {}),
        } for name, (fit, parts) in ((n, variants[n]) for n in ENSEMBLE_REFITS)},
    }
    for est in estimates.values():
        est["pull"] = (est["value_uas"] - injected) / est["error_uas"]
    headline = estimates[DEFAULT_ESTIMATE]
    value, error = headline["value_uas"] * u.uas, headline["error_uas"] * u.uas
    small = test["true_parallax"] < 0.5

    def small_parallax_residual(name):
        nn_plx = fits[name]["fakemag"] * 10 ** (-0.2 * test.corrected_mag())
        return float(np.median(nn_plx[small] - test["true_parallax"][small]) * 1000)

    # predict_stars gives the constant model's errors with the scale at each star's S/N (the S/N form, as the
    # catalogue); divided by k_snr they carry the constant scale instead
    k_snr = models["constant"].uncertainty_scale_at(np.asarray(test["snr"], float)) / models["constant"].uncertainty_scale
    sigma_snr = fits["constant"]["fakemag_error"]
    g = test_mv["phot_g_mean_mag"]
    zp_mv = fits["multivariate"]["zeropoint"].to_value(u.uas)
    truth_mv = test_mv["true_zeropoint"] * 1000
    fit_range = (g > 11) & (g < 17)
    slope = float(np.polyfit(g[fit_range], zp_mv[fit_range], 1)[0])
    slope_true = float(np.polyfit(g[fit_range], truth_mv[fit_range], 1)[0])
    refit_per_star = {}
    for f, fit in mv_refits.items():
        zp_f, err_f = fit({f: test_mv[f]})
        refit_per_star[f] = (zp_f.to_value(u.uas), err_f.to_value(u.uas))
    zp_refit, zp_refit_err = refit_per_star.get("phot_g_mean_mag", refit_per_star[feats[0]])
    in_refit = fit_range & np.isfinite(zp_refit)
    trends, train_ranges = {}, {}
    for feat in models["multivariate"].offset_features:
        x = np.asarray(test_mv[feat], dtype=float)
        lo, hi = train_ranges[feat] = np.quantile(np.asarray(train_mv[feat], float), [0.01, 0.99])  # training stars
        inside = (x >= lo) & (x <= hi)
        trends[feat] = fit_quadratic_trend(x[inside], fits["multivariate"]["zeropoint"][inside],
                                           fits["multivariate"]["zeropoint_error"][inside], feature=feat).to_dict()
    calibrated_mv = models["multivariate"].zeropoint_calibration

    report = {
        "out": os.path.abspath(final_out or out),
        "settings": {**cfg, "seed": seed, "full": bool(full),
                     "training_noise_snr": getattr(models["multivariate"], "training_noise_snr", None)},
        "training_convergence": {name: model.training_convergence for name, model in models.items()},
        "zeropoint": {
            "convention": ZEROPOINT_CONVENTION,
            "constant": {
                "injected_uas": injected,
                "estimate": DEFAULT_ESTIMATE,
                "value_uas": headline["value_uas"],
                "error_uas": headline["error_uas"],
                "pull": headline["pull"],
                "within_2_sigma": bool(abs(headline["value_uas"] - injected) < 2 * headline["error_uas"]),
                "failed_members": failed,
                "screening": members.screening,
                **estimates,
                "median_residual_small_parallax_uas": small_parallax_residual("constant"),
            },
            "multivariate": {
                "injected": injected_trend.__doc__.split(": ", 1)[1].rstrip("."),
                "luminosity": "constant-ensemble member 0's luminosity network, held fixed (two-stage calibration)",
                "slope_uas_per_mag": slope,
                "injected_slope_uas_per_mag": slope_true,
                "rms_difference_uas": float(np.sqrt(np.nanmean((zp_mv - truth_mv) ** 2))),
                "mean_difference_uas": float(np.nanmean(zp_mv - truth_mv)),
                "per_star_estimate": summaries.zeropoint_estimate(models["multivariate"]),
                "quadratic_trends": trends,
                "calibrated_trend": None if calibrated_mv is None else calibrated_mv.summary(),
                "refit": {  # the G quadratic: slope, rms and mean difference against the injected zero-point
                    "method": "one quadratic per feature, luminosity network fixed, scale fixed",
                    "slope_uas_per_mag": float(np.polyfit(g[in_refit], zp_refit[in_refit], 1)[0]),
                    "rms_difference_uas": float(np.sqrt(np.nanmean((zp_refit - truth_mv) ** 2))),
                    "mean_difference_uas": float(np.nanmean(zp_refit - truth_mv)),
                    "median_error_uas": float(np.nanmedian(zp_refit_err)),
                    "n_stars": int(next(iter(mv_refits.values())).n_stars),
                    "trends": {f: fit.trend(f).to_dict() for f, fit in mv_refits.items()},
                    "scatter": {f: float(fit.scatter) for f, fit in mv_refits.items()},
                },
            },
        },
        "no_offset": {"median_residual_small_parallax_uas": small_parallax_residual("no_offset")},
        "distances": {name: _accuracy_block(fits[name]["fakemag"], test_mv if name == "multivariate" else test,
                                            np.ones(len(test), bool)) for name in models},
        "uncertainties": {
            "calibration": summaries.uncertainty_summary(models["constant"]),
            # with the scale at each star's S/N (the S/N form), with the constant scale (predict without S/N), without
            **uncertainty_coverages(models["constant"], fits["constant"], test),
            "other_models": {name: summaries.uncertainty_summary(models[name])
                             for name in ("no_offset", "multivariate")},
            # per-star zero-points against the injected ones (errors of neighbouring stars are correlated)
            "zeropoint_multivariate": coverage(zp_mv - truth_mv,
                                               fits["multivariate"]["zeropoint_error"].to_value(u.uas)),
            "zeropoint_refit_g": coverage(zp_refit - truth_mv, zp_refit_err),
        },
    }

    # ---- catalogue and plots
    t = time.time()
    log("writing the catalogue and plots")
    n_test = len(test)
    cat = catalogue_from_dataset(
        test, fits["constant"]["fakemag"], fits["constant"]["fakemag_error"], fits["constant"]["fakemag_model_error"],
        zeropoint=np.full(n_test, value.to_value(u.mas)) * u.mas,
        zeropoint_error=np.full(n_test, error.to_value(u.mas)) * u.mas,
    )
    cat["flag_luminosity"] = fits["constant"]["flag_luminosity"]
    cat.meta["ERRSCALE"] = (models["constant"].uncertainty_scale, "NN uncertainties = network's x ERRSCALE")
    cat.meta["ERRCALIB"] = (bool(models["constant"].uncertainty_calibrated), "ERRSCALE fitted on held-out Gaia data")
    write_catalogue(cat, os.path.join(out, "catalogue.fits"), overwrite=True)
    files = {"catalogue": "catalogue.fits"}
    nn_plx = {label: fits[name]["fakemag"] * 10 ** (-0.2 * test.corrected_mag()) * u.mas
              for label, name in (("no offset", "no_offset"), ("constant offset", "constant"))}
    files["fig3"] = plots.plot_parallax_residuals(test.quantity("parallax"), nn_plx,
                                                  os.path.join(out, "fig3_parallax_residuals.png"), zeropoint=value)
    files["fig4"] = plots.plot_zeropoint_trends(
        {f: test_mv[f] for f in models["multivariate"].offset_features}, fits["multivariate"]["zeropoint"],
        fits["multivariate"]["zeropoint_error"], os.path.join(out, "fig4_zeropoint_trends.png"),
        truth=test_mv["true_zeropoint"] * u.mas,
        refit={f: (v[0] * u.uas, v[1] * u.uas) for f, v in refit_per_star.items()},
        trends={k: QuadraticTrend(k, (v["a"], v["b"], v["c"]), (v["a_err"], v["b_err"], v["c_err"]), v["pivot"],
                                  tuple(v["valid_range"]), v["n_stars"]) for k, v in trends.items()},
    )
    files["fig4_2d"] = plots.plot_zeropoint_maps(  # the 2-D panels: G against BP-RP and Teff
        {f: test_mv[f] for f in models["multivariate"].offset_features}, fits["multivariate"]["zeropoint"],
        os.path.join(out, "fig4_zeropoint_2d.png"), truth=test_mv["true_zeropoint"] * u.mas, valid_ranges=train_ranges)
    resid = fits["constant"]["fakemag"] / test["true_fakemag"] - 1
    files["fig7"] = plots.plot_sigma_mad({"teff": test["teff"], "logg": test["logg"], "snr": test["snr"]}, resid,
                                         os.path.join(out, "fig7_sigma_mad.png"))
    files["distances"] = plots.plot_distance_comparison(cat["dist"], test.quantity("true_distance"),
                                                        os.path.join(out, "distance_comparison.png"),
                                                        reference_label="true")
    resid_d, sigma_d = _distance_errors(fits["constant"]["fakemag"], sigma_snr, test)
    groups = coverage_groups(test)
    k_const = models["constant"].uncertainty_scale
    files["reliability"] = plots.plot_reliability(
        {"S/N": {k[4:].replace("_", "-"): (resid_d[v], sigma_d[v]) for k, v in groups.items() if k.startswith("snr_")},
         "population": {k: (resid_d[v], sigma_d[v]) for k, v in groups.items() if k in ("giants", "dwarfs")},
         "calibration": {"scale at the star's S/N": (resid_d, sigma_d),
                         "constant scale": (resid_d, sigma_d / k_snr),
                         "uncalibrated": (resid_d, sigma_d / k_snr / k_const)}},
        os.path.join(out, "reliability.png"))
    report["files"] = {k: os.path.basename(v) for k, v in files.items()}
    timing["report"] = time.time() - t
    timing["total"] = time.time() - t0
    report["timing_s"] = timing

    with atomic_path(os.path.join(out, "report.json"), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
    text = _text_report(report)
    with atomic_path(os.path.join(out, "report.txt"), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            f.write(text + "\n")
    report["text"] = text
    return report
