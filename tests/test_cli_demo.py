"""``demo`` and ``simulate`` subcommands end to end on tiny sizes."""
import json
import os

import numpy as np
import pytest
from astropy.table import QTable

from astronn_gaiacal.zeropoint.estimates import DEFAULT_ESTIMATE
from astronn_gaiacal.cli import main
from astronn_gaiacal.constants import PAPER_QUADRATIC_TRENDS, PAPER_ZEROPOINT_UAS
from astronn_gaiacal.io.dataset import read_dataset


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = main(["demo", "--out", str(out), "--json", "--n-train", "200", "--n-test", "150", "--epochs", "2",
                     "--ensemble", "2", "--mc-num", "4", "--jobs", "2"])
    return code, json.loads(buf.getvalue()), out, err.getvalue()


def test_demo_report(demo_run):
    code, report, out, err = demo_run
    assert code == 0
    assert "a 2-member constant ensemble and the multivariate model (4 trainings, 2 at a time)" in err
    zc = report["zeropoint"]["constant"]
    assert zc["injected_uas"] == PAPER_ZEROPOINT_UAS
    assert zc["estimate"] == DEFAULT_ESTIMATE
    assert zc["value_uas"] == zc[DEFAULT_ESTIMATE]["value_uas"] and zc["error_uas"] == zc[DEFAULT_ESTIMATE]["error_uas"]
    net, refit = zc["ensemble"], zc["refit_ensemble"]
    assert net["error_uas"] > 0 and np.isclose(net["error_uas"], np.hypot(net["mc_error_uas"], net["ensemble_error_uas"]))
    assert np.isclose(refit["error_uas"], np.hypot(refit["statistical_error_uas"], refit["ensemble_error_uas"]))
    # 2 members: standard error of their mean times the 68.27 % Student-t quantile with 1 degree of freedom
    assert np.isclose(refit["ensemble_error_uas"], 1.8373 * refit["member_spread_uas"] / np.sqrt(2), rtol=1e-4)
    assert refit["n_stars"] == 200 and refit["scatter"] > 0
    for name in ("refit_scaled_ensemble", "refit_curved_ensemble"):  # the same members, other refit models
        v = zc[name]
        assert np.isclose(v["error_uas"], np.hypot(v["statistical_error_uas"], v["ensemble_error_uas"]))
        assert np.isfinite(v["scale"]) and v["scale_error"] > 0 and v["n_stars"] == 200
    assert zc["refit_curved_ensemble"]["curvature_error"] > 0 and zc["refit_scaled_ensemble"]["curvature"] == 0
    for est in (zc, net, refit):
        assert np.isclose(est["pull"], (est["value_uas"] - zc["injected_uas"]) / est["error_uas"])
    assert zc["within_2_sigma"] == (abs(zc["pull"]) < 2)
    assert report["settings"]["epochs_no_offset"] == 1  # half the epochs, as in the default recipe
    assert report["settings"]["epochs_multivariate"] == 1
    mv = report["zeropoint"]["multivariate"]
    assert np.isfinite(mv["slope_uas_per_mag"]) and np.isfinite(mv["rms_difference_uas"])
    rf = mv["refit"]  # one trend refit per feature with the multivariate network fixed
    assert set(rf["trends"]) == set(rf["scatter"]) == {"phot_g_mean_mag", "bp_rp", "teff"} and rf["n_stars"] == 200
    assert rf["median_error_uas"] > 0 and all(t["n_stars"] == 200 for t in rf["trends"].values())
    assert np.isfinite(rf["slope_uas_per_mag"]) and rf["rms_difference_uas"] >= abs(rf["mean_difference_uas"])
    assert "refit, network fixed, one quadratic per feature" in (out / "report.txt").read_text()
    # two-stage: the multivariate model's luminosity network is constant member 0's, unchanged by its training
    from astronn_gaiacal.models.ensemble import load

    constant, multivariate = load(str(out / "models" / "constant")), load(str(out / "models" / "multivariate"))
    assert multivariate.luminosity_frozen and "constant-ensemble member 0" in mv["luminosity"]
    for a, b in zip(constant.members[0].luminosity_model.get_weights(), multivariate.luminosity_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert set(report["distances"]) == {"no_offset", "constant", "multivariate"}
    for block in report["distances"].values():
        assert block["all"]["n"] == 150 and block["all"]["sigma_mad"] > 0
    assert report["settings"]["n_train"] == 200 and report["settings"]["epochs"] == 2
    # two epochs cannot converge: every model is flagged, in the JSON and the text report
    assert set(report["training_convergence"]) == {"no_offset", "constant", "multivariate"}
    assert all(v["converged"] is False for v in report["training_convergence"].values())
    assert "constant model NOT CONVERGED" in (out / "report.txt").read_text()
    with open(out / "report.json") as f:
        saved = json.load(f)
    assert saved["zeropoint"] == report["zeropoint"]
    assert saved["out"] == str(out)  # the folder's final name, not the temporary one it was written in
    assert "recovered (constant)" in (out / "report.txt").read_text() and ".partial" not in (out / "report.txt").read_text()


def test_demo_injected_trend_matches_eq7(demo_run):
    _, report, out, _ = demo_run
    cat = QTable.read(out / "catalogue.fits")
    # recompute eq. 7 (G clipped to its validity range) and the least-squares slope independently
    a, b, c = PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["coeffs"]
    pivot = PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["pivot"]
    lo, hi = PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["range"]
    g = np.asarray(cat["phot_g_mean_mag"], dtype=float)
    x = np.clip(g, lo, hi) - pivot
    truth = a * x**2 + b * x + c
    sel = (g > 11) & (g < 17)
    slope = np.polyfit(g[sel], truth[sel], 1)[0]
    assert report["zeropoint"]["multivariate"]["injected_slope_uas_per_mag"] == pytest.approx(slope, rel=1e-6)


def test_demo_trend_summaries_valid_on_training_range(demo_run):
    _, report, out, _ = demo_run
    mv = report["zeropoint"]["multivariate"]
    text = (out / "report.txt").read_text()
    for feature, refit in mv["refit"]["trends"].items():  # the refit's range: the training stars' central 98 %
        lo, hi = refit["valid_range"]
        s_lo, s_hi = mv["quadratic_trends"][feature]["valid_range"]  # test stars, inside the training range
        assert lo <= s_lo < s_hi <= hi
        if mv["calibrated_trend"] is not None:  # refitted on the same training stars
            cal = mv["calibrated_trend"]["trends"][feature]
            assert cal["valid_range"] == pytest.approx([lo, hi], rel=1e-9)
            assert f"valid {lo:.3g}..{hi:.3g}" in text
    assert mv["per_star_estimate"] in text
    assert ("calibrated trend stored in models/multivariate" in text) == (mv["calibrated_trend"] is not None)


def test_demo_catalogue_and_plots(demo_run):
    _, report, out, _ = demo_run
    cat = QTable.read(out / "catalogue.fits")
    assert len(cat) == 150
    for col in ("apogee_id", "fakemag", "fakemag_error", "nn_parallax", "nn_parallax_error", "dist", "dist_error",
                "weighted_dist", "zeropoint"):
        assert col in cat.colnames, col
    zc = report["zeropoint"]["constant"]
    np.testing.assert_allclose(cat["zeropoint"].to_value("uas"), zc["value_uas"], rtol=1e-6)
    # distance = 1 / NN parallax, the NN parallax being fakemag * 10^(-m/5) (physics of the conversion)
    good = np.asarray(cat["nn_parallax"].value) > 0
    np.testing.assert_allclose(cat["dist"][good].to_value("pc"), 1000.0 / cat["nn_parallax"][good].to_value("mas"),
                               rtol=1e-4)
    for name in ("fig3", "fig4", "fig4_2d", "fig7", "distances", "reliability"):
        path = out / report["files"][name]
        assert path.suffix == ".png" and path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in ("no_offset", "constant", "multivariate"):
        assert (out / "models" / model).is_dir()
    # 20 validation stars are too few to calibrate the uncertainties: the report and the header say so
    unc = report["uncertainties"]
    assert unc["calibration"]["uncertainty_calibrated"] is False and cat.meta["ERRCALIB"] is False
    assert unc["coverage"]["all"]["n"] == 150 and len(unc["coverage"]["all"]["observed"]) == 6
    assert not [p for p in os.listdir(out) if p.startswith(".") or p.endswith(".tmp")]


def test_demo_bad_sizes(tmp_path, capsys):
    code, _, err = _run(capsys, "demo", "--out", str(tmp_path / "d"), "--epochs", "0")
    assert code == 2 and "--epochs must be a positive integer" in err
    assert not (tmp_path / "d").exists()


def test_simulate_constant_zeropoint(tmp_path, capsys):
    path = tmp_path / "mock.h5"
    code, out, _ = _run(capsys, "simulate", str(path), "-n", "400", "--seed", "3", "--json")
    assert code == 0
    summary = json.loads(out)
    ds = read_dataset(str(path))
    assert len(ds) == 400 and summary["files"][0]["n_stars"] == 400
    np.testing.assert_allclose(ds["true_zeropoint"], PAPER_ZEROPOINT_UAS / 1000.0)
    # catalogue parallax = true + zero-point + Gaussian noise of the quoted error
    pull = (ds["parallax"] - ds["true_parallax"] - PAPER_ZEROPOINT_UAS / 1000.0) / ds["parallax_error"]
    assert abs(pull.mean()) < 4 / np.sqrt(400) and 0.85 < pull.std() < 1.15
    # same seed, same file content
    again = tmp_path / "again.h5"
    assert _run(capsys, "simulate", str(again), "-n", "400", "--seed", "3")[0] == 0
    np.testing.assert_array_equal(read_dataset(str(again))["spectra"], ds["spectra"])


def test_simulate_train_test_paper_trend(tmp_path, capsys):
    tr, te, png = tmp_path / "tr.h5", tmp_path / "te.h5", tmp_path / "s.png"
    code, _, _ = _run(capsys, "simulate", str(tr), "-n", "300", "--test-out", str(te), "--n-test", "200",
                      "--zeropoint", "paper-g", "--plot", str(png))
    assert code == 0 and png.stat().st_size > 5000
    train, test = read_dataset(str(tr)), read_dataset(str(te))
    assert (train["snr"] > 200).all() and (test["snr"] < 200).all()
    a, b, c = PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["coeffs"]
    lo, hi = PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["range"]
    x = np.clip(test["phot_g_mean_mag"], lo, hi) - PAPER_QUADRATIC_TRENDS["phot_g_mean_mag"]["pivot"]
    np.testing.assert_allclose(test["true_zeropoint"] * 1000.0, a * x**2 + b * x + c, rtol=1e-6)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mock.csv"], "must be an HDF5 file"),
        (["mock.h5", "-n", "0"], "--n-stars must be a positive integer"),
        (["mock.h5", "--zeropoint", "paper-g", "--zeropoint-uas", "-30"], "--zeropoint-uas applies"),
        (["mock.h5", "--n-test", "10"], "--n-test needs --test-out"),
        (["mock.h5", "--plot", "x.pdf"], "must be a .png file"),
    ],
)
def test_simulate_bad_input(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a.endswith((".h5", ".csv", ".pdf")) else a for a in argv]
    code, _, err = _run(capsys, "simulate", *argv)
    assert code == 2 and message in err
    assert os.listdir(tmp_path) == []


def test_simulate_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "m.h5"
    path.write_bytes(b"keep")
    code, _, err = _run(capsys, "simulate", str(path), "-n", "10")
    assert code == 2 and "--overwrite" in err and path.read_bytes() == b"keep"


def test_demo_coverage_is_that_of_the_catalogue_errors(demo_run):
    """The report's coverage is of the errors the catalogue carries (the S/N form), not the S/N scale applied twice."""
    from astropy import units as u

    from astronn_gaiacal import pipeline
    from astronn_gaiacal.constants import PAPER_ZEROPOINT_UAS as ZP
    from astronn_gaiacal.models import load
    from astronn_gaiacal.models.calibration import UncertaintyCalibration, coverage
    from astronn_gaiacal.simulate import simulate_train_test
    from astronn_gaiacal.studies.demo import uncertainty_coverages

    _, _, out, _ = demo_run
    model = load(str(out / "models" / "constant"))
    model.uncertainty_calibration = UncertaintyCalibration(0.4, 0.02, 300, 0.5, 1.0, 0.0, 0.68, 0.95, "by hand", 0.0,
                                                           snr_dependence={"scale_inf": 0.35, "noise": 60.0})
    _, test = simulate_train_test(200, 150, seed=0, zeropoint=ZP * u.uas)
    fit = pipeline.predict_stars(model, test, mc_num=4)
    got = uncertainty_coverages(model, fit, test)
    cat = pipeline.catalogue_for(model, test, mc_num=4)  # the catalogue's dist_error, against the truth
    truth = np.asarray(test["true_distance"], float)
    resid = cat["dist"].to_value(u.pc) - truth
    expected = coverage(resid, cat["dist_error"].to_value(u.pc))
    assert got["coverage"]["all"]["within_1sigma"] == pytest.approx(expected["within_1sigma"], abs=0.03)
    snr = np.asarray(test["snr"], float)
    k = np.sqrt(0.35**2 + (60.0 / snr) ** 2)
    constant = coverage(resid, cat["dist_error"].to_value(u.pc) * 0.4 / k)
    assert got["coverage_constant_scale"]["all"]["within_1sigma"] == pytest.approx(constant["within_1sigma"],
                                                                                    abs=0.03)
    assert got["coverage"]["all"]["within_1sigma"] > got["coverage_constant_scale"]["all"]["within_1sigma"]
