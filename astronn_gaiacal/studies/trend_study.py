"""Which multivariate method recovers a zero-point trend from one catalogue?  Repeat simulate -> train -> compare.

Each survey draws an independent mock catalogue (its own seed) with an
injected zero-point of one kind (:data:`TREND_KINDS`): the paper's constant,
or the constant plus the paper's quadratic summaries (eqs. 7-9, eq. 7 with the
linear coefficient -0.92) in G, BP-RP, Teff or all three, each quadratic
shifted to vanish at the pivot (:data:`PIVOT`) so that the zero-point there is
the paper's -52.3 µas whatever the kind, and clipped to its published validity
range (:func:`injected_zeropoint`).  On that one catalogue it trains, with the
demo's recipe (:data:`astronn_gaiacal.studies.configs.CONFIGS` ``'default'``, one
model per method), a multivariate model with the paper's dense offset network,
one with the quadratic offset head (:class:`~astronn_gaiacal.nn.layers.QuadraticOffset`)
and a constant-offset model, and scores the candidate methods
(:data:`METHODS`, docs/calibration.rst "The multivariate method (pre-registered)"):

``network``
    the dense offset network's learned per-star zero-point (MC-dropout mean and spread);
``network_refit``
    the maximum-likelihood trend refit of that model (luminosity network held
    fixed, scale free; :meth:`~astronn_gaiacal.models.ZeropointModel.refit_zeropoint_trend`);
``quadratic``, ``quadratic_refit``
    the same two for the quadratic head;
``constant_refit``
    the trend refit of the constant-offset model.

Every method gets the paper's three features; none is told the injected kind.
"""
import functools
import json
import os
import time

import numpy as np
from astropy import units as u
from tqdm.auto import tqdm

from .. import pipeline
from ..constants import DEFAULT_MODEL, PAPER_OFFSET_FEATURES, PAPER_QUADRATIC_TRENDS, PAPER_ZEROPOINT_UAS
from ..io.atomic import atomic_path
from ..models.workers import TrainJob, train_jobs
from ..simulate import simulate_train_test
from ..zeropoint.trends import paper_trend
from .configs import CONFIGS

__all__ = ["METHODS", "PIVOT", "TREND_KINDS", "decide", "injected_zeropoint", "score_method", "summarise_trend_study",
           "trend_study", "trend_study_text"]

#: Injected zero-point kinds and the features each one depends on.
TREND_KINDS = {"constant": (), "g": ("phot_g_mean_mag",), "bp_rp": ("bp_rp",), "teff": ("teff",),
               "all": PAPER_OFFSET_FEATURES}
#: Where every injected zero-point equals the paper's constant (near the training stars' medians, 11.5, 1.5 mag
#: and 4640 K at 3,000 stars); the "level at the pivot" is the zero-point of a star with these features.
PIVOT = {"phot_g_mean_mag": 12.0, "bp_rp": 1.5, "teff": 4650.0}
#: The candidate methods, in order of simplicity (the rule's tie-break goes to the earlier one).
METHODS = ("constant_refit", "quadratic", "quadratic_refit", "network", "network_refit")
#: The rule's tolerances: slope within this fraction of the injected one, level at the pivot within this many sigma.
SLOPE_TOLERANCE = 0.2
LEVEL_PULL_LIMIT = 2.0
#: Stars per feature over which slopes are measured: the central fraction (as the refit's validity range).
COVERAGE = 0.98


def injected_zeropoint(kind):
    """The zero-point of a survey of ``kind``: ``f(columns) -> Quantity [mas]`` for the simulator.

    :math:`\\varpi_0 = -52.3\\,\\mu{\\rm as} + \\sum_j [q_j(x_j) - q_j(x_{0,j})]` over the kind's
    features, :math:`q_j` the paper's quadratic (eqs. 7-9; eq. 7 with linear
    coefficient -0.92) with :math:`x_j` clipped to its validity range and
    :math:`x_{0,j}` the :data:`PIVOT`.

    Examples
    --------
    >>> f = injected_zeropoint("g")
    >>> f({"phot_g_mean_mag": [12.0, 16.0, 20.0]}).to(u.uas).round(2)
    <Quantity [-52.3 , -74.86, -74.6 ] uas>
    """
    if kind not in TREND_KINDS:
        raise ValueError(f"kind must be one of {sorted(TREND_KINDS)}, got {kind!r}")
    features = TREND_KINDS[kind]

    def zeropoint(columns):
        total = PAPER_ZEROPOINT_UAS
        for name in features:
            lo, hi = PAPER_QUADRATIC_TRENDS[name]["range"]
            x = np.clip(np.asarray(columns[name], dtype=float), lo, hi)
            total = total + (paper_trend(name, x) - paper_trend(name, [PIVOT[name]])).to_value(u.uas)
        return (np.asarray(total, dtype=float) * u.uas).to(u.mas)

    zeropoint.description = (f"{PAPER_ZEROPOINT_UAS} uas" + "".join(
        f" + eq. {7 + list(PAPER_QUADRATIC_TRENDS).index(f)} in {f} (clipped, 0 at {PIVOT[f]})" for f in features))
    return zeropoint


def _slope_curvature(x, y):
    """Least-squares line slope and quadratic curvature of ``y`` against ``x`` (µas per unit, per unit^2)."""
    slope = np.polyfit(x, y, 1)[0]
    curvature = np.polyfit(x - np.median(x), y, 2)[0]
    return float(slope), float(curvature)


def score_method(value, error, truth, features, level, level_error, level_truth=PAPER_ZEROPOINT_UAS):
    """The per-survey numbers of one method: slopes and curvatures against the truth's, rms, pulls.

    Parameters
    ----------
    value, error, truth : ndarray [uas], shape (N,)
        The method's per-star zero-point and 1-sigma error, and the injected one; NaN where undefined.
    features : dict of ndarray
        The stars' feature columns.
    level, level_error : float [uas]
        The method's zero-point at the pivot and its error.

    Returns
    -------
    dict
        ``slope_<f>``, ``true_slope_<f>``, ``slope_error_<f>``, ``curvature_error_<f>`` per feature;
        ``rms_uas`` (per-star, against the truth), ``pull_rms`` and ``pull_within_2`` (per-star
        ``(value - truth) / error``), ``pull_ends_within_2`` (the stars in the outer 5 % of G on each side),
        ``level``, ``level_error``, ``level_pull``, ``n_stars`` (where the method is defined).
    """
    value, error, truth = (np.asarray(a, dtype=float) for a in (value, error, truth))
    ok = np.isfinite(value)
    out = {"n_stars": int(ok.sum())}
    for name, col in features.items():
        x = np.asarray(col, dtype=float)
        lo, hi = np.quantile(x, [(1 - COVERAGE) / 2, 1 - (1 - COVERAGE) / 2])
        use = ok & (x >= lo) & (x <= hi)
        if use.sum() < 10:
            s = c = ts = tc = np.nan
        else:
            (s, c), (ts, tc) = _slope_curvature(x[use], value[use]), _slope_curvature(x[use], truth[use])
        out.update({f"slope_{name}": s, f"true_slope_{name}": ts, f"slope_error_{name}": s - ts,
                    f"curvature_error_{name}": c - tc})
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (value - truth) / error
    out["rms_uas"] = float(np.sqrt(np.mean((value[ok] - truth[ok]) ** 2))) if ok.any() else np.nan
    finite = np.isfinite(pull)
    out["pull_rms"] = float(np.sqrt(np.mean(pull[finite] ** 2))) if finite.any() else np.inf
    out["pull_within_2"] = float(np.mean(np.abs(pull[ok]) < 2)) if ok.any() else 0.0
    g = np.asarray(features.get("phot_g_mean_mag", next(iter(features.values()))), dtype=float)
    ends = ok & ((g <= np.quantile(g, 0.05)) | (g >= np.quantile(g, 0.95)))
    out["pull_ends_within_2"] = float(np.mean(np.abs(pull[ends]) < 2)) if ends.any() else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        level_pull = (level - level_truth) / level_error if level_error > 0 else np.inf * np.sign(level - level_truth)
    out.update(level=float(level), level_error=float(level_error), level_pull=float(level_pull))
    return out


def survey_passes(score, kind):
    """The pre-registered criterion: every injected feature's slope within 20 %, the level within 2 sigma."""
    for name in TREND_KINDS[kind]:
        s, ts = score[f"slope_{name}"], score[f"true_slope_{name}"]
        if not np.isfinite(s) or abs(s - ts) > SLOPE_TOLERANCE * abs(ts):
            return False
    return bool(np.isfinite(score["level_pull"]) and abs(score["level_pull"]) < LEVEL_PULL_LIMIT)


def _factory(head, offset, epochs, lr, weight_averaging, model):
    net = pipeline.configured_model(model, offset, list(PAPER_OFFSET_FEATURES) if offset == "multivariate" else None,
                                    lr=lr, epochs=epochs, weight_averaging=weight_averaging)
    net.offset_head = head
    return net


def _pivot_features():
    return {name: np.array([PIVOT[name]]) for name in PAPER_OFFSET_FEATURES}


def _learned(net, features, mc_num):
    value, error = net.predict_zeropoint(features, mc_num=mc_num)
    level, level_error = net.predict_zeropoint(_pivot_features(), mc_num=mc_num)
    return value.to_value(u.uas), error.to_value(u.uas), float(level.to_value(u.uas)[0]), \
        float(level_error.to_value(u.uas)[0])


def _refit(net, train, features):
    fit = net.refit_zeropoint_trend(train["spectra"], train["parallax"], train["parallax_error"], features,
                                    magnitude=train.corrected_mag(), names=list(PAPER_OFFSET_FEATURES))
    value, error = fit(features)
    level, level_error = fit(_pivot_features())
    return value.to_value(u.uas), error.to_value(u.uas), float(level.to_value(u.uas)[0]), \
        float(level_error.to_value(u.uas)[0]), fit


def run_survey(kind, seed, n_train, epochs, lr, weight_averaging, mc_num, model=DEFAULT_MODEL, n_jobs=None):
    """One survey of ``kind``: simulate, train the three models, score every method.

    Returns
    -------
    dict
        ``kind``, ``seed``, ``train_s``, ``scale_<method>`` (refits' luminosity scale) and
        ``methods``: ``{method: score_method(...) + {'passes': bool}}``.
    """
    train, _ = simulate_train_test(n_train, 1, seed=seed, zeropoint=injected_zeropoint(kind), progress=False)
    features = {name: np.asarray(train[name], dtype=float) for name in PAPER_OFFSET_FEATURES}
    truth = np.asarray(train["true_zeropoint"], dtype=float) * 1000.0
    jobs = []
    for head, offset in (("network", "multivariate"), ("quadratic", "multivariate"), ("network", "constant")):
        factory = functools.partial(_factory, head, offset, epochs, lr, weight_averaging, model)
        probe = factory()
        jobs.append(TrainJob(factory, seed, pipeline.fit_arguments(probe, train), f"{offset}/{head}"))
    t = time.time()
    network, quadratic, constant = train_jobs(jobs, n_jobs=n_jobs, progress=False)
    for net in (network, quadratic, constant):
        net.mc_num = mc_num  # the refits' model parallaxes too
    row = {"kind": kind, "seed": int(seed), "train_s": time.time() - t, "methods": {}}
    results = {"network": _learned(network, features, mc_num), "quadratic": _learned(quadratic, features, mc_num)}
    for name, net in (("network_refit", network), ("quadratic_refit", quadratic), ("constant_refit", constant)):
        *results[name], fit = _refit(net, train, features)
        row[f"scale_{name}"] = float(fit.scale)
    for name in METHODS:
        value, error, level, level_error = results[name]
        score = score_method(value, error, truth, features, level, level_error)
        score["passes"] = survey_passes(score, kind)
        row["methods"][name] = score
    return row


def trend_study(kinds=("g", "all"), k=4, n_train=None, epochs=None, lr=None, weight_averaging=None, mc_num=None,
                seed=0, model=DEFAULT_MODEL, n_jobs=None, out=None, progress=True, log=None):
    """Run ``k`` surveys of each kind (interleaved: kind 1 seed 1, kind 2 seed 1, ...), scoring every method.

    Survey ``i`` of every kind uses seed ``seed + 1000 i`` (the same stars, a different injected
    zero-point).  With ``out``, ``trend_study.json`` and ``trend_study.txt`` are rewritten after every
    survey, so an interrupted study keeps what it finished; run again with the same ``out`` and recipe, it
    goes on from there (the surveys already in ``trend_study.json`` are kept, not redone).

    Returns
    -------
    dict
        ``{"settings": ..., "surveys": [run_survey rows], "summary": summarise_trend_study(...)}``.
    """
    demo = CONFIGS["default"]
    settings = dict(kinds=list(kinds), k=int(k), n_train=int(n_train or demo["n_train"]),
                    epochs=int(epochs or demo["epochs"]), lr=float(lr or demo["lr"]),
                    weight_averaging=float(demo["weight_averaging"] if weight_averaging is None else weight_averaging),
                    mc_num=int(mc_num or demo["mc_num"]), seed=int(seed), model=model, pivot=PIVOT,
                    slope_tolerance=SLOPE_TOLERANCE, level_pull_limit=LEVEL_PULL_LIMIT)
    for kind in kinds:
        if kind not in TREND_KINDS:
            raise ValueError(f"unknown zero-point kind {kind!r}; known: {sorted(TREND_KINDS)}")
    if int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    result = {"settings": settings, "surveys": _finished(out, settings)}
    done = {(r["kind"], r["seed"]) for r in result["surveys"]}
    plan = [(i, kind) for i in range(int(k)) for kind in kinds if (kind, seed + 1000 * i) not in done]
    for i, kind in tqdm(plan, desc="trend study", unit="survey", disable=not progress):
        row = run_survey(kind, seed + 1000 * i, settings["n_train"], settings["epochs"], settings["lr"],
                         settings["weight_averaging"], settings["mc_num"], model=model, n_jobs=n_jobs)
        result["surveys"].append(row)
        result["summary"] = summarise_trend_study(result["surveys"])
        if out is not None:
            write_trend_study(result, out)
        if log is not None:
            log(f"{kind} seed {row['seed']} ({row['train_s']:.0f} s): " + "; ".join(
                f"{m} {'pass' if s['passes'] else 'fail'}" for m, s in row["methods"].items()))
    return result


def _finished(out, settings):
    """The surveys an earlier, interrupted run of the same study (same recipe) left in ``out``."""
    path = None if out is None else os.path.join(out, "trend_study.json")
    if path is None or not os.path.isfile(path):
        return []
    with open(path) as f:
        earlier = json.load(f)
    same = ("n_train", "epochs", "lr", "weight_averaging", "mc_num", "model", "pivot")
    if any(earlier["settings"].get(key) != settings[key] for key in same):
        raise ValueError(f"{path} holds a study with another recipe; choose another output folder")
    return _numbers(earlier["surveys"])


def _numbers(obj):
    """Undo :func:`_plain`'s strings for non-finite numbers."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return float(obj) if obj in ("inf", "-inf", "nan") else obj


def summarise_trend_study(surveys):
    """Per kind and method: surveys passing, medians of ``|slope error| / |injected slope|``, rms, level pulls."""
    summary = {}
    for kind in dict.fromkeys(r["kind"] for r in surveys):
        rows = [r for r in surveys if r["kind"] == kind]
        summary[kind] = {}
        for method in METHODS:
            scores = [r["methods"][method] for r in rows]
            entry = {"n_surveys": len(rows), "n_pass": int(sum(s["passes"] for s in scores)),
                     "median_rms_uas": float(np.median([s["rms_uas"] for s in scores])),
                     "level_pulls": [s["level_pull"] for s in scores],
                     "frac_level_within_2": float(np.mean([abs(s["level_pull"]) < 2 for s in scores])),
                     "median_pull_within_2": float(np.median([s["pull_within_2"] for s in scores]))}
            for name in TREND_KINDS[kind]:
                rel = [s[f"slope_error_{name}"] / abs(s[f"true_slope_{name}"]) for s in scores]
                entry[f"relative_slope_errors_{name}"] = [float(v) for v in rel]
            summary[kind][method] = entry
    return summary


def decide(summary):
    """The pre-registered rule: most passing surveys over all kinds; ties to the simpler (earlier in :data:`METHODS`)."""
    totals = {m: sum(summary[kind][m]["n_pass"] for kind in summary) for m in METHODS}
    best = max(totals.values())
    return next(m for m in METHODS if totals[m] == best), totals


def trend_study_text(result):
    """The study's table as text: one line per kind and method."""
    s = result["settings"]
    lines = [f"trend study: {len(result['surveys'])} surveys, {s['n_train']} training stars, {s['epochs']} epochs, "
             f"lr {s['lr']}, weight averaging {s['weight_averaging']}; pass = every injected slope within "
             f"{100 * s['slope_tolerance']:.0f} % and the level at the pivot within {s['level_pull_limit']:g} sigma",
             f"{'kind':<9}{'method':<17}{'pass':>6}  {'rel. slope errors (per injected feature)':<44}"
             f"{'rms uas':>8}  level pulls"]
    for kind, methods in result.get("summary", {}).items():
        for method, e in methods.items():
            slopes = " ".join(f"{name.split('_')[-1] if name != 'phot_g_mean_mag' else 'G'}:"
                              + ",".join(f"{v:+.2f}" for v in e[f"relative_slope_errors_{name}"])
                              for name in TREND_KINDS[kind]) or "-"
            lines.append(f"{kind:<9}{method:<17}{e['n_pass']:>3}/{e['n_surveys']:<2}  {slopes:<44}"
                         f"{e['median_rms_uas']:8.1f}  " + ",".join(f"{p:+.1f}" for p in e["level_pulls"]))
    if result.get("summary"):
        winner, totals = decide(result["summary"])
        lines.append("passes over all kinds: " + ", ".join(f"{m} {n}" for m, n in totals.items())
                     + f"; the rule picks {winner}")
    return "\n".join(lines)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else str(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_trend_study(result, folder):
    """Write ``trend_study.json`` (everything) and ``trend_study.txt`` (:func:`trend_study_text`) into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    with atomic_path(os.path.join(folder, "trend_study.json"), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(_plain(result), f, indent=1)
    with atomic_path(os.path.join(folder, "trend_study.txt"), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            f.write(trend_study_text(result) + "\n")
    return folder
