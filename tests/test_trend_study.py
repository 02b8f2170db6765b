"""The multivariate-method study: injected zero-points, the per-survey scores, the pre-registered rule, the CLI."""
import numpy as np
import pytest
from astropy import units as u

from astronn_gaiacal.cli import main
from astronn_gaiacal.constants import PAPER_QUADRATIC_TRENDS, PAPER_ZEROPOINT_UAS
from astronn_gaiacal.studies.trend_study import (
    METHODS,
    PIVOT,
    TREND_KINDS,
    decide,
    injected_zeropoint,
    score_method,
    summarise_trend_study,
    survey_passes,
)


def _stars(rng, n=3000):
    return {"phot_g_mean_mag": rng.uniform(9.0, 16.0, n), "bp_rp": rng.uniform(0.7, 3.2, n),
            "teff": rng.uniform(3900.0, 5900.0, n)}


def _eq(name, x):
    """The paper's quadratic written out from its coefficients (independent of paper_trend)."""
    a, b, c = PAPER_QUADRATIC_TRENDS[name]["coeffs"]
    lo, hi = PAPER_QUADRATIC_TRENDS[name]["range"]
    dx = np.clip(x, lo, hi) - PAPER_QUADRATIC_TRENDS[name]["pivot"]
    return a * dx**2 + b * dx + c


@pytest.mark.parametrize("kind", sorted(TREND_KINDS))
def test_injected_zeropoint_is_the_sum_of_the_shifted_quadratics(rng, kind):
    stars = _stars(rng)
    expected = PAPER_ZEROPOINT_UAS + sum(_eq(f, stars[f]) - _eq(f, PIVOT[f]) for f in TREND_KINDS[kind])
    got = np.broadcast_to(injected_zeropoint(kind)(stars).to_value(u.uas), (3000,))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    at_pivot = {f: np.array([PIVOT[f]]) for f in PIVOT}
    assert float(np.ravel(injected_zeropoint(kind)(at_pivot).to_value(u.uas))[0]) == pytest.approx(PAPER_ZEROPOINT_UAS)
    with pytest.raises(ValueError, match="kind"):
        injected_zeropoint("spline")


def test_score_measures_a_known_slope_error(rng):
    stars = _stars(rng)
    truth = injected_zeropoint("g")(stars).to_value(u.uas)
    g = stars["phot_g_mean_mag"]
    value = truth + 0.7 * (g - 12.0)  # a known extra slope of +0.7 uas/mag, no curvature
    score = score_method(value, np.full(g.size, 2.0), truth, stars, level=-50.3, level_error=1.0)
    assert score["slope_error_phot_g_mean_mag"] == pytest.approx(0.7, abs=1e-9)
    assert score["curvature_error_phot_g_mean_mag"] == pytest.approx(0.0, abs=1e-9)
    lo, hi = np.quantile(g, [0.01, 0.99])
    inside = (g >= lo) & (g <= hi)
    assert score["true_slope_phot_g_mean_mag"] == pytest.approx(np.polyfit(g[inside], truth[inside], 1)[0])
    assert score["rms_uas"] == pytest.approx(np.sqrt(np.mean((0.7 * (g - 12.0)) ** 2)))
    assert score["pull_within_2"] == pytest.approx(np.mean(np.abs(0.7 * (g - 12.0) / 2.0) < 2))
    assert score["level_pull"] == pytest.approx(2.0)


def test_the_pass_criterion(rng):
    stars = _stars(rng)
    truth = injected_zeropoint("g")(stars).to_value(u.uas)
    g = stars["phot_g_mean_mag"]
    err = np.full(g.size, 2.0)
    true_slope = score_method(truth, err, truth, stars, -52.3, 1.0)["true_slope_phot_g_mean_mag"]
    assert true_slope < -3  # the injected G trend falls towards faint stars

    def passes(rel, level=-52.3, level_error=1.0):
        value = truth + rel * true_slope * (g - 12.0)
        return survey_passes(score_method(value, err, truth, stars, level, level_error), "g")

    assert passes(0.15) and passes(-0.15)
    assert not passes(0.25) and not passes(-0.3)
    assert not passes(0.0, level=-55.0)  # 2.7 sigma
    assert not passes(0.0, level_error=0.0)  # no sigma: cannot pass
    # a BP-RP-only survey ignores the G slope
    off = score_method(truth + 2.0 * (g - 12.0), err, truth, stars, -52.3, 1.0)
    assert not survey_passes(off, "g") and survey_passes(off, "constant")


def test_the_rule_counts_passes_and_breaks_ties_to_the_simpler():
    def row(kind, passing):
        scores = {m: {"passes": m in passing, "rms_uas": 1.0, "level_pull": 0.0, "pull_within_2": 1.0,
                      "slope_error_phot_g_mean_mag": 0.0, "true_slope_phot_g_mean_mag": -5.0,
                      "slope_error_bp_rp": 0.0, "true_slope_bp_rp": -10.0, "slope_error_teff": 0.0,
                      "true_slope_teff": 0.03} for m in METHODS}
        return {"kind": kind, "methods": scores}

    surveys = [row("g", {"network_refit", "quadratic_refit"}), row("all", {"network_refit", "quadratic_refit"}),
               row("g", {"network"})]
    summary = summarise_trend_study(surveys)
    assert summary["g"]["quadratic_refit"]["n_pass"] == 1 and summary["g"]["quadratic_refit"]["n_surveys"] == 2
    winner, totals = decide(summary)
    assert totals["quadratic_refit"] == totals["network_refit"] == 2 and totals["network"] == 1
    assert winner == "quadratic_refit"  # tie: the simpler one


def test_cli_rejects_an_unknown_kind(tmp_path, capsys):
    assert main(["calibrate-study", "--out", str(tmp_path / "s"), "--trend-kinds", "g,spline"]) == 2
    assert "--trend-kinds" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_an_interrupted_study_goes_on_from_its_file(tmp_path):
    from astronn_gaiacal.studies.trend_study import _finished, write_trend_study

    settings = {"n_train": 3000, "epochs": 70, "lr": 3e-3, "weight_averaging": 0.35, "mc_num": 30,
                "model": "ApogeeGaiaBCNN", "pivot": dict(PIVOT), "slope_tolerance": 0.2, "level_pull_limit": 2.0}
    assert _finished(str(tmp_path), settings) == []
    survey = {"kind": "g", "seed": 5, "train_s": 1.0, "methods": {}}
    write_trend_study({"settings": settings, "surveys": [survey]}, str(tmp_path))
    assert _finished(str(tmp_path), settings) == [survey]
    assert (tmp_path / "trend_study.txt").exists()
    with pytest.raises(ValueError, match="another recipe"):
        _finished(str(tmp_path), dict(settings, epochs=35))
