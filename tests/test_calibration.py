"""The calibration study: pull bookkeeping, the summary's statistics, and the CLI on tiny sizes."""
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from astronn_gaiacal.studies.calibration import ESTIMATES, calibration_study, summarise_pulls
from astronn_gaiacal.cli import main


def _table(pulls_by_estimate, sigma=3.0):
    cols = {}
    for est, pull in pulls_by_estimate.items():
        cols[f"pull_{est}"] = pull
        cols[f"sigma_{est}"] = np.full(len(pull), sigma) * u.uas
    return QTable(cols)


def test_unit_gaussian_pulls_are_calibrated():
    rng = np.random.default_rng(1)
    pulls = {est: rng.standard_normal(20000) for est in ESTIMATES}
    s = summarise_pulls(_table(pulls))
    for est in ESTIMATES:
        assert s[est]["frac_within_1"] == pytest.approx(0.6827, abs=0.01)
        assert s[est]["frac_within_2"] == pytest.approx(0.9545, abs=0.005)
        assert s[est]["rms_pull"] == pytest.approx(1.0, abs=0.02)
        assert s[est]["calibrated"] and s[est]["median_sigma_uas"] == 3.0


def test_underestimated_sigma_is_flagged():
    # astroNN's case: the miss is ~4x the MC-dropout spread
    rng = np.random.default_rng(2)
    s = summarise_pulls(_table({est: 4 * rng.standard_normal(5000) for est in ESTIMATES}))
    for est in ESTIMATES:
        assert s[est]["frac_within_1"] == pytest.approx(0.197, abs=0.02) and not s[est]["calibrated"]


def test_study_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ensemble must be >= 2"):
        calibration_study(k=1, ensemble=1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        calibration_study(k=0)
    with pytest.raises(u.UnitTypeError, match="injected"):
        calibration_study(k=1, injected=3 * u.mag)


def test_cli_tiny_study(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["calibrate-study", "--out", str(out), "-k", "2", "--n-train", "120", "--epochs", "1",
                 "--ensemble", "2", "--mc-num", "3", "--injected-uas", "-40", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0 and err.count("[calibrate-study] realisation") == 2
    summary = json.loads(stdout)
    assert set(summary["pulls"]) == set(ESTIMATES) and len(summary["runs"]) == 2
    for run in summary["runs"]:
        for est in ESTIMATES:
            assert run[f"pull_{est}"] == pytest.approx((run[f"value_{est}"] + 40) / run[f"sigma_{est}"])
            assert run[f"sigma_{est}"] > 0
    t = QTable.read(out / "calibration_study.ecsv")
    assert len(t) == 2 and t["value_refit_ensemble"].unit == u.uas
    # 2 members: |v0 - mean| = |v0 - v1| / 2 = (their sd) / sqrt(2), and that is the ensemble term of sigma
    gap = np.abs(t["value_refit"] - t["value_refit_ensemble"]).to_value(u.uas)
    np.testing.assert_allclose(gap, t["refit_member_spread"].to_value(u.uas) / np.sqrt(2), rtol=1e-6)
    assert np.all(gap <= t["sigma_refit_ensemble"].to_value(u.uas))
    assert (out / "pulls.png").stat().st_size > 5000
    assert json.loads((out / "summary.json").read_text())["settings"]["injected_uas"] == -40
    # the saved per-realisation arrays reproduce the recorded refits
    from astronn_gaiacal.zeropoint.fit import fit_zeropoint

    for i in range(2):
        saved = np.load(out / f"realisation_{i:02d}.npz")
        assert saved["model_parallax"].shape == (2, 120) and int(saved["seed"]) == t["seed"][i]
        again = fit_zeropoint(saved["parallax"], saved["parallax_error"], saved["model_parallax"][0])
        assert again.value.to_value(u.uas) == pytest.approx(t["value_refit"][i].to_value(u.uas), rel=1e-9)
        scaled = [fit_zeropoint(saved["parallax"], saved["parallax_error"], p, fit_scale=True).value.to_value(u.uas)
                  for p in saved["model_parallax"]]
        assert np.mean(scaled) == pytest.approx(t["value_refit_scaled_ensemble"][i].to_value(u.uas), rel=1e-9)
    # --reanalyse redoes the refits from the saved files: the same numbers, also for files without magnitudes
    # (the survey is simulated again from its seed)
    saved = dict(np.load(out / "realisation_01.npz"))
    del saved["magnitude"]
    np.savez_compressed(out / "realisation_01.npz", **saved)
    assert main(["calibrate-study", "--out", str(out), "--reanalyse", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for first, second in zip(summary["runs"], again["runs"]):
        for est in ESTIMATES:
            assert second[f"value_{est}"] == pytest.approx(first[f"value_{est}"], rel=1e-9, abs=1e-9)
            assert second[f"sigma_{est}"] == pytest.approx(first[f"sigma_{est}"], rel=1e-9)
    assert (out / "calibration_study.original.ecsv").exists() and (out / "calibration_study.ecsv").exists()


def test_cli_study_with_outliers_and_the_robust_loss(tmp_path, capsys):
    """--*-fraction puts the outlier population in every survey, --loss trains and refits with the Student-t."""
    from astronn_gaiacal.simulate import simulate_train_test
    from astronn_gaiacal.zeropoint.fit import fit_zeropoint

    out = tmp_path / "study"
    code = main(["calibrate-study", "--out", str(out), "-k", "1", "--n-train", "150", "--epochs", "1", "--ensemble",
                 "2", "--mc-num", "3", "--mismatch-fraction", "0.1", "--loss", "gaia_student_t_nll", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    settings = summary["settings"]
    assert settings["loss"] == "gaia_student_t_nll" and settings["outliers"]["mismatch"] == 0.1
    saved = np.load(out / "realisation_00.npz")
    odd, _ = simulate_train_test(150, 1, seed=0, outliers={"mismatch": 0.1})
    plain, _ = simulate_train_test(150, 1, seed=0)
    np.testing.assert_array_equal(saved["parallax"], np.asarray(odd["parallax"]))
    assert not np.array_equal(saved["parallax"], np.asarray(plain["parallax"]))
    t = QTable.read(out / "calibration_study.ecsv")
    robust = fit_zeropoint(saved["parallax"], saved["parallax_error"], saved["model_parallax"][0],
                           likelihood="student_t")
    gauss = fit_zeropoint(saved["parallax"], saved["parallax_error"], saved["model_parallax"][0])
    assert t["value_refit"][0].to_value(u.uas) == pytest.approx(robust.value.to_value(u.uas), rel=1e-6)
    assert robust.value.to_value(u.uas) != pytest.approx(gauss.value.to_value(u.uas), rel=1e-3)
    # --reanalyse refits with the study's likelihood
    assert main(["calibrate-study", "--out", str(out), "--reanalyse", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["runs"][0]
    assert again["value_refit_ensemble"] == pytest.approx(summary["runs"][0]["value_refit_ensemble"], rel=1e-6)


def test_cli_study_bad_input(tmp_path, capsys):
    assert main(["calibrate-study", "--out", str(tmp_path / "s"), "--ensemble", "1"]) == 2
    assert "--ensemble must be >= 2" in capsys.readouterr().err
    assert main(["calibrate-study", "--out", str(tmp_path / "none"), "--reanalyse"]) == 2
    assert "calibration_study.ecsv' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["calibrate-study", "--out", str(tmp_path / "s"), "--loss", "cauchy"]) == 2
    assert "unknown --loss 'cauchy'" in capsys.readouterr().err
    assert main(["calibrate-study", "--out", str(tmp_path / "s"), "--mismatch-fraction", "1.5"]) == 2
    assert "mismatch fraction must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_refits_leave_a_failed_member_out():
    from astronn_gaiacal.zeropoint.estimates import refits_from_parallaxes
    from astronn_gaiacal.zeropoint.fit import fit_zeropoint
    from astronn_gaiacal.zeropoint.estimates import combine_fits

    rng = np.random.default_rng(7)
    n, zp = 3000, -0.0523
    true = rng.uniform(0.2, 3.0, n)
    err = rng.uniform(0.02, 0.06, n)
    plx = true + zp + rng.normal(0, err)
    mag = rng.uniform(7, 12, n)
    # members 0, 1, 3 learned luminosities to 6 %; member 2 diverged (a factor ~2 off, 60 % scatter)
    models = np.array([true * np.exp(rng.normal(0, 0.06, n)) for _ in range(4)])
    models[2] = true * 0.5 * np.exp(rng.normal(0, 0.6, n))
    with pytest.warns(RuntimeWarning, match=r"member\(s\) \[2\] failed"):
        fits = refits_from_parallaxes(models, plx * u.mas, err * u.mas, mag)
    assert fits["failed"] == [2] and len(fits["members"]) == 4
    good = [fit_zeropoint(plx, err, models[i]) for i in (0, 1, 3)]
    expected, _ = combine_fits(good)
    assert fits["refit_ensemble"][0].value.to_value(u.uas) == pytest.approx(expected.value.to_value(u.uas), rel=1e-12)
    assert fits["refit_ensemble"][0].error.to_value(u.uas) == pytest.approx(expected.error.to_value(u.uas), rel=1e-12)
    # the screened estimate finds the injected -52.3 uas; with the failed member in, the mean is far off
    assert abs(fits["refit_ensemble"][0].value.to_value(u.uas) + 52.3) < 3 * fits["refit_ensemble"][0].error.to_value(u.uas)
    assert abs(np.mean([f.value.to_value(u.uas) for f in fits["members"]]) + 52.3) > 50

