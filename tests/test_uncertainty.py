"""The uncertainty calibration: a known mis-scaling recovered, the scale stored, applied and reloaded."""
import json
import os

import numpy as np
import pytest
from astropy import units as u
from scipy import optimize, stats

import astronn_gaiacal  # noqa: F401  (first: Keras 2 and the registered classes)
from astronn_gaiacal import pipeline, summaries
from astronn_gaiacal._compat import keras
from astronn_gaiacal.io.dataset import Dataset
from astronn_gaiacal.models import DeepEnsemble, load
from astronn_gaiacal.models.calibration import (
    MIN_CALIBRATION_STARS,
    UNCERTAINTY_KEY,
    UncalibratedWarning,
    UncertaintyCalibration,
    coverage,
    degrade_spectra,
    fit_snr_uncertainty_scale,
    fit_uncertainty_scale,
    gaia_z_scores,
    snr_scale,
)
from astronn_gaiacal.models.folders import MANIFEST, PARAMETER_FILE, PLUGIN_KEY

from _toy import N_PIX, ToyApogeeBCNN, toy_survey


def _mock(n, inflation, seed=0, outliers=0.0, zeropoint=-0.05):
    """Gaia and NN parallaxes of ``n`` stars; the NN reports ``inflation`` times its true error."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.2, 3.0, n)
    gaia_err = rng.uniform(0.02, 0.08, n)
    nn_err = 0.08 * true  # 8 % parallax errors: comparable with Gaia's for most stars
    gaia = true + zeropoint + rng.normal(0, gaia_err)
    nn = true + rng.normal(0, nn_err)
    bad = rng.random(n) < outliers
    nn[bad] += rng.normal(0, 1.0, bad.sum())  # wild outliers, as in real catalogues
    return gaia, gaia_err, nn, inflation * nn_err


def _ml_scale(gaia, gaia_err, nn, nn_err, zeropoint):
    """Independent: the Gaussian maximum-likelihood scale (no robust statistics)."""
    def nll(log_k):
        var = gaia_err**2 + (np.exp(log_k) * nn_err) ** 2
        return 0.5 * np.sum((gaia - zeropoint - nn) ** 2 / var + np.log(var))

    return float(np.exp(optimize.minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))


@pytest.mark.parametrize("inflation", [2.0, 0.5])
def test_known_mis_scaling_is_recovered(inflation):
    gaia, gaia_err, nn, nn_err = _mock(4000, inflation)
    cal = fit_uncertainty_scale(gaia, gaia_err, nn, nn_err, zeropoint=-0.05)
    assert cal.scale == pytest.approx(1 / inflation, rel=0.05)
    assert cal.scale == pytest.approx(_ml_scale(gaia, gaia_err, nn, nn_err, -0.05), rel=0.05)
    assert 0 < cal.scale_error < 0.05 * cal.scale and cal.n_stars == 4000
    assert cal.robust_std_after == pytest.approx(1.0, abs=0.05) and cal.n_clipped <= 2
    assert (cal.robust_std_before < 1) == (inflation > 1)
    # after the scale, the z-scores are unit normal: 68 % and 95 % within 1 and 2
    z = gaia_z_scores(gaia, gaia_err, nn, nn_err, zeropoint=-0.05, scale=cal.scale)
    assert np.mean(np.abs(z) < 1) == pytest.approx(stats.norm.cdf(1) - stats.norm.cdf(-1), abs=0.02)
    assert cal.coverage_2sigma == pytest.approx(0.9545, abs=0.015)


def test_outliers_do_not_move_the_robust_scale():
    gaia, gaia_err, nn, nn_err = _mock(4000, 2.0, seed=1, outliers=0.03)
    cal = fit_uncertainty_scale(gaia, gaia_err, nn, nn_err, zeropoint=-0.05)
    assert cal.scale == pytest.approx(0.5, rel=0.05)
    assert _ml_scale(gaia, gaia_err, nn, nn_err, -0.05) > 1.5 * cal.scale  # a plain Gaussian fit is pulled far off
    assert 40 < cal.n_clipped <= 0.03 * 4000  # outliers, and only outliers (~3 %, some small), are left out


def test_missing_values_are_left_out_and_too_few_stars_refused():
    gaia, gaia_err, nn, nn_err = _mock(400, 2.0, seed=2)
    gaia[:30] = -9999.0
    nn_err[30:40] = np.nan
    assert fit_uncertainty_scale(gaia, gaia_err, nn, nn_err, zeropoint=-0.05).n_stars == 360
    with pytest.raises(ValueError, match=f"at least {MIN_CALIBRATION_STARS}"):
        fit_uncertainty_scale(gaia[:MIN_CALIBRATION_STARS + 20], gaia_err[:MIN_CALIBRATION_STARS + 20],
                              nn[:MIN_CALIBRATION_STARS + 20], nn_err[:MIN_CALIBRATION_STARS + 20])


def test_unconstrained_scale_is_refused():
    """Gaia errors that already cover the differences leave the NN's scale undetermined: no number, an error."""
    gaia, gaia_err, nn, nn_err = _mock(2000, 2.0, seed=3)
    with pytest.raises(ValueError, match="cannot be calibrated"):
        fit_uncertainty_scale(gaia, 3 * gaia_err + 0.3 * nn, nn, nn_err, zeropoint=-0.05)


def _snr_mock(n, scale_inf, noise, seed=5):
    """Gaia and NN parallaxes; the NN's true error is its reported one times sqrt(scale_inf^2 + (noise/S/N)^2)."""
    rng = np.random.default_rng(seed)
    snr = 10 ** rng.uniform(np.log10(40), np.log10(400), n)
    true = rng.uniform(0.5, 3.0, n)
    gaia_err = rng.uniform(0.01, 0.04, n)
    nn_err = 0.2 * true  # reported: 20 %, as wide at every S/N
    gaia = true - 0.05 + rng.normal(0, gaia_err)
    nn = true + rng.normal(0, nn_err * snr_scale(snr, scale_inf, noise))
    return gaia, gaia_err, nn, nn_err, snr


def _ml_snr_scale(gaia, gaia_err, nn, nn_err, snr, zeropoint):
    """Independent: maximum likelihood over (log k_inf, log s) with a derivative-free optimiser."""
    def nll(p):
        var = gaia_err**2 + (snr_scale(snr, np.exp(p[0]), np.exp(p[1])) * nn_err) ** 2
        return 0.5 * np.sum((gaia - zeropoint - nn) ** 2 / var + np.log(var))

    return np.exp(optimize.minimize(nll, [np.log(0.5), np.log(10.0)], method="Nelder-Mead",
                                    options={"xatol": 1e-8, "fatol": 1e-10}).x)


def test_known_snr_dependent_mis_scaling_is_recovered():
    """Errors reported 2.5x too wide at high S/N and only 1.25x too wide at S/N 40: both parameters recovered."""
    gaia, gaia_err, nn, nn_err, snr = _snr_mock(6000, 0.4, 28.0)
    fit = fit_snr_uncertainty_scale(gaia, gaia_err, nn, nn_err, snr, zeropoint=-0.05, n_bootstrap=50)
    assert fit["scale_inf"] == pytest.approx(0.4, rel=0.05) and fit["noise"] == pytest.approx(28.0, rel=0.1)
    np.testing.assert_allclose([fit["scale_inf"], fit["noise"]],
                               _ml_snr_scale(gaia, gaia_err, nn, nn_err, snr, -0.05), rtol=1e-3)
    assert 0 < fit["scale_inf_error"] < 0.05 * fit["scale_inf"] and 0 < fit["noise_error"] < 0.1 * fit["noise"]
    assert fit["n_stars"] == fit["n_rows"] == 6000 and fit["n_clipped"] <= 3
    # with the S/N form the low-S/N stars are covered as the high-S/N ones; one constant scale cannot do both
    cal = UncertaintyCalibration(**{**fit_uncertainty_scale(gaia, gaia_err, nn, nn_err, -0.05).to_dict(),
                                    "snr_dependence": fit})
    low, high = snr < 60, snr > 250
    residual = nn - (gaia + 0.05)
    for k, expect_ok in ((cal.scale_at(snr), True), (cal.scale, False)):
        total = np.sqrt(gaia_err**2 + (k * nn_err) ** 2)
        c_low, c_high = (coverage(residual[s], np.broadcast_to(total, snr.shape)[s])["within_1sigma"] for s in (low, high))
        assert (abs(c_low - 0.6827) < 0.03 and abs(c_high - 0.6827) < 0.03) == expect_ok
    # stars without an S/N get the constant scale; a calibration without the S/N form is constant
    np.testing.assert_allclose(cal.scale_at(np.array([np.nan, -9999.0, 100.0])),
                               [cal.scale, cal.scale, snr_scale(100.0, fit["scale_inf"], fit["noise"])])
    assert UncertaintyCalibration.from_dict({**cal.to_dict(), "snr_dependence": None}).scale_at(snr) == cal.scale


def test_snr_fit_bootstraps_stars_not_rows():
    """Copies of the same stars (noise injection) carry no new Gaia information: the error does not shrink."""
    gaia, gaia_err, nn, nn_err, snr = _snr_mock(1500, 0.4, 28.0, seed=6)
    one = fit_snr_uncertainty_scale(gaia, gaia_err, nn, nn_err, snr, zeropoint=-0.05, n_bootstrap=60)
    rep = [np.tile(a, 3) for a in (gaia, gaia_err, nn, nn_err, snr)]
    three = fit_snr_uncertainty_scale(*rep, zeropoint=-0.05, star=np.tile(np.arange(1500), 3), n_bootstrap=60)
    assert three["scale_inf"] == pytest.approx(one["scale_inf"], rel=1e-6) and three["n_stars"] == 1500
    assert three["scale_inf_error"] == pytest.approx(one["scale_inf_error"], rel=0.35)


def test_degrade_spectra_adds_the_missing_noise():
    rng = np.random.default_rng(7)
    spectra, err = np.ones((3, 40000), np.float32), np.full((3, 40000), 0.01, np.float32)
    err[:, :100] = np.nan  # masked pixels stay as they are
    noisy = degrade_spectra(spectra, err, np.array([100.0, 100.0, 40.0]), 50.0, rng)
    added = noisy - spectra
    # S/N 100 -> 50: the error doubles, so the added noise is 0.01 * sqrt(2^2 - 1)
    assert np.std(added[0, 100:]) == pytest.approx(0.01 * np.sqrt(3), rel=0.02)
    assert np.all(added[:, :100] == 0) and np.all(added[2] == 0)  # already below the target: unchanged


def test_coverage_of_gaussian_errors():
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0.5, 2.0, 40000)
    cov = coverage(rng.normal(0, sigma), sigma, levels=(0.5, 0.6827, 0.9545))
    np.testing.assert_allclose(cov["observed"], cov["nominal"], atol=0.01)
    assert cov["within_1sigma"] == pytest.approx(0.6827, abs=0.01)
    assert coverage(rng.normal(0, sigma), 2 * sigma)["within_1sigma"] == pytest.approx(0.9545, abs=0.01)


# ---------------------------------------------------------------- on trained models
@pytest.fixture(scope="module")
def survey():
    # a spectral signal at which the first convolution's ReLUs survive Adam's first steps (see SIGNAL in
    # test_models.py; at toy_survey's 0.05 some 6-epoch trainings were still on the constant-luminosity plateau)
    return toy_survey(700, seed=21, n_pixels=N_PIX, zeropoint=-0.1, signal=0.2)


def _factory():
    net = ToyApogeeBCNN(offset="constant", lr=2e-3)
    net.max_epochs, net.verbose, net.mc_num = 6, 0, 20
    # 210 held-out stars: with astroNN's 10 % (70) the scale's bootstrap error reached 0.38 of the scale
    # (and 1.06 at signal 0.05: the network's scatter below most of those stars' Gaia errors); with 210
    # it was 0.06-0.12 of it in 12 trainings (6 seeds x fused and TensorFlow paths)
    net.val_size = 0.3
    return net


@pytest.fixture(scope="module")
def trained(survey, tmp_path_factory):
    keras.utils.set_random_seed(7)
    net = _factory()
    net.fit(spectra=survey["spectra"], parallax=survey["parallax"], parallax_error=survey["parallax_error"],
            magnitude=survey["mag"])
    folder = net.save(str(tmp_path_factory.mktemp("unc") / "model"))
    return net, folder


def _seeded(fn, *args, **kwargs):
    keras.utils.set_random_seed(3)
    return fn(*args, **kwargs)


def test_fit_calibrates_on_its_validation_stars(trained, survey):
    net, _ = trained
    cal = net.uncertainty_calibration
    assert isinstance(cal, UncertaintyCalibration) and net.uncertainty_calibrated
    # the stars are astroNN's validation split, recorded with the model
    np.testing.assert_array_equal(np.sort(net.val_idx), net.validation_split["indices"])
    assert cal.n_stars == len(net.val_idx) and "validation split" in cal.stars
    assert 0 < cal.scale_error < 0.5 * cal.scale
    # the same fit again, against an independent computation from the uncalibrated predictions of those stars
    idx = np.sort(net.val_idx)
    keras.utils.set_random_seed(3)
    refit = net.calibrate_uncertainties(survey["spectra"], survey["parallax"], survey["parallax_error"],
                                        magnitude=survey["mag"])
    net.uncertainty_calibration = cal
    fakemag, err = _seeded(net.predict, survey["spectra"][idx], calibrated=False)
    f = 10 ** (-0.2 * survey["mag"][idx])
    zp = net.predict_zeropoint()[0].to_value(u.mas)
    plx, plx_err = survey["parallax"][idx], survey["parallax_error"][idx]
    z = gaia_z_scores(plx, plx_err, fakemag[:, 0] * f, err["total"][:, 0] * f, zeropoint=zp, scale=refit.scale)
    kept = np.abs(z - np.median(z)) < 4.0
    # the clipped Gaussian likelihood is at its maximum: d log L / dk = 0 (computed here by finite differences)
    def log_l(k):
        var = plx_err[kept] ** 2 + (k * err["total"][kept, 0] * f[kept]) ** 2
        return -0.5 * np.sum((plx[kept] - zp - fakemag[kept, 0] * f[kept]) ** 2 / var + np.log(var))
    h = 1e-4 * refit.scale
    assert log_l(refit.scale) >= max(log_l(refit.scale - h), log_l(refit.scale + h))
    assert refit.n_clipped == int((~kept).sum())
    assert refit.scale == pytest.approx(cal.scale, abs=3 * cal.scale_error)  # differs by MC noise only


def test_every_output_carries_the_scale(trained, survey):
    net, _ = trained
    k = net.uncertainty_scale
    assert k != pytest.approx(1.0, abs=0.02)
    x, mag = survey["spectra"][:25], survey["mag"][:25]
    _, raw = _seeded(net.predict, x, calibrated=False)
    _, cal = _seeded(net.predict, x)
    for part in ("total", "model", "predictive"):
        np.testing.assert_allclose(cal[part], k * raw[part], rtol=1e-6)
    fakemag, _ = _seeded(net.predict, x)
    d, d_err = _seeded(net.predict_distance, x, magnitude=mag)
    np.testing.assert_allclose(d_err["total"].to_value(u.pc), d.to_value(u.pc) * cal["total"][:, 0] / fakemag[:, 0],
                               rtol=1e-6)
    ds = Dataset(spectra=x, columns={"mag": mag * u.mag, "parallax": survey["parallax"][:25] * u.mas,
                                     "parallax_error": survey["parallax_error"][:25] * u.mas})
    cat = _seeded(pipeline.catalogue_for, net, ds, mc_num=net.mc_num)
    np.testing.assert_allclose(cat["fakemag_error"], k * raw["total"][:, 0], rtol=1e-6)
    assert cat.meta["ERRSCALE"][0] == pytest.approx(k) and cat.meta["ERRCALIB"][0] is True
    summary = summaries.model_summary(net)
    assert summary["uncertainty_scale"] == pytest.approx(k) and summary["uncertainty_calibrated"]


def test_scale_survives_save_and_load(trained, survey):
    net, folder = trained
    with open(os.path.join(folder, PARAMETER_FILE)) as f:
        block = json.load(f)[PLUGIN_KEY]
    assert block[UNCERTAINTY_KEY]["scale"] == pytest.approx(net.uncertainty_scale)
    # a block saved before the S/N form existed reads as the same constant calibration, at every S/N
    before = UncertaintyCalibration.from_dict({k: v for k, v in block[UNCERTAINTY_KEY].items() if k != "snr_dependence"})
    assert before == net.uncertainty_calibration and before.scale_at(np.array([60.0, 150.0])) == net.uncertainty_scale
    loaded = load(folder)
    assert loaded.uncertainty_calibration == net.uncertainty_calibration and loaded.validation_split == net.validation_split
    loaded.mc_num = net.mc_num
    x = survey["spectra"][:10]
    np.testing.assert_allclose(_seeded(loaded.predict, x)[1]["total"],
                               net.uncertainty_scale * _seeded(loaded.predict, x, calibrated=False)[1]["total"], rtol=1e-6)


def test_snr_form_on_a_trained_model(trained, survey):
    """Noise injected into the validation spectra: the S/N form is fitted on all copies, saved, and applied by S/N."""
    net, _ = trained
    constant = net.uncertainty_calibration
    n = len(survey["mag"])
    try:
        keras.utils.set_random_seed(3)
        cal = net.calibrate_uncertainties(survey["spectra"], survey["parallax"], survey["parallax_error"],
                                          magnitude=survey["mag"], spectra_err=np.full(survey["spectra"].shape, 0.005),
                                          snr=np.full(n, 200.0))
        snr = cal.snr_dependence
        n_val = len(net.val_idx)
        assert snr["n_stars"] == n_val and snr["n_rows"] == 5 * n_val  # own S/N + 4 injected, all below 200
        assert snr["snr_range"] == [50.0, 200.0] and snr["noise"] >= 0 and snr["scale_inf"] > 0
        assert cal.scale == pytest.approx(constant.scale, abs=3 * constant.scale_error)  # the constant fit as before
        at = np.array([50.0, 200.0, np.nan])
        np.testing.assert_allclose(net.uncertainty_scale_at(at), [snr_scale(50.0, snr["scale_inf"], snr["noise"]),
                                                                  snr_scale(200.0, snr["scale_inf"], snr["noise"]),
                                                                  cal.scale])
        assert net.uncertainty_scale == cal.scale  # without an S/N: the constant
        # what a model folder stores (plugin section / manifest) is JSON: the S/N form survives it
        stored = UncertaintyCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
        assert stored == cal and np.array_equal(stored.scale_at(at), cal.scale_at(at))
    finally:
        net.uncertainty_calibration = constant


def test_catalogue_applies_the_scale_at_each_stars_snr(trained, survey):
    """With an S/N form and a dataset ``snr`` column, each star's error is scaled at its own S/N."""
    import dataclasses

    net, _ = trained
    constant = net.uncertainty_calibration
    form = {"scale_inf": 0.4, "noise": 30.0}
    try:
        net.uncertainty_calibration = dataclasses.replace(constant, snr_dependence=form)
        x, mag = survey["spectra"][:20], survey["mag"][:20]
        snr = np.linspace(50.0, 400.0, 20)
        _, raw = _seeded(net.predict, x, calibrated=False)
        ds = Dataset(spectra=x, columns={"mag": mag * u.mag, "parallax": survey["parallax"][:20] * u.mas,
                                         "parallax_error": survey["parallax_error"][:20] * u.mas, "snr": snr})
        cat = _seeded(pipeline.catalogue_for, net, ds, mc_num=net.mc_num)
        k = np.sqrt(0.4**2 + (30.0 / snr) ** 2)  # independent of snr_scale
        np.testing.assert_allclose(cat["fakemag_error"], k * raw["total"][:, 0], rtol=1e-6)
        assert cat.meta["ERRSKINF"][0] == 0.4 and cat.meta["ERRSNOIS"][0] == 30.0
        no_snr = Dataset(spectra=x, columns={"mag": mag * u.mag})  # without the column: the constant scale
        cat = _seeded(pipeline.catalogue_for, net, no_snr, mc_num=net.mc_num)
        np.testing.assert_allclose(cat["fakemag_error"], constant.scale * raw["total"][:, 0], rtol=1e-6)
    finally:
        net.uncertainty_calibration = constant


def test_folder_without_a_calibration_loads_uncalibrated(trained, tmp_path):
    import shutil

    _, folder = trained
    old = shutil.copytree(folder, tmp_path / "old")
    with open(old / PARAMETER_FILE) as f:
        params = json.load(f)
    del params[PLUGIN_KEY][UNCERTAINTY_KEY]
    with open(old / PARAMETER_FILE, "w") as f:
        json.dump(params, f)
    with pytest.warns(UncalibratedWarning, match="no uncertainty calibration"):
        net = load(str(old))
    assert net.uncertainty_scale == 1.0 and not net.uncertainty_calibrated


@pytest.mark.parametrize("name", ["dense_constant", "dense_multivariate", "dense_ensemble"])
def test_saved_0_1_0_folders_load_uncalibrated(data_path, name):
    with pytest.warns(UncalibratedWarning):
        model = load(data_path(f"saved_0.1.0/{name}"))
    assert model.uncertainty_scale == 1.0 and not model.uncertainty_calibrated
    assert summaries.uncertainty_summary(model) == {"uncertainty_scale": 1.0, "uncertainty_calibrated": False,
                                                   "uncertainty_calibration": None}


def test_ensemble_calibrates_its_combined_uncertainty(survey, tmp_path):
    ens = DeepEnsemble.train(_factory, n_members=2, seed=30, progress=False, spectra=survey["spectra"],
                             parallax=survey["parallax"], parallax_error=survey["parallax_error"],
                             magnitude=survey["mag"])
    assert ens.members[0].validation_split == ens.members[1].validation_split  # the same held-out stars
    cal = ens.uncertainty_calibration
    assert cal is not None and cal.scale != ens.members[0].uncertainty_scale
    x = survey["spectra"][:10]
    _, raw = _seeded(ens.predict, x, calibrated=False)
    _, out = _seeded(ens.predict, x)
    np.testing.assert_allclose(out["total"], cal.scale * raw["total"], rtol=1e-6)
    folder = ens.save(str(tmp_path / "ens"))
    with open(os.path.join(folder, MANIFEST)) as f:
        assert json.load(f)[UNCERTAINTY_KEY]["scale"] == pytest.approx(cal.scale)
    assert load(folder).uncertainty_calibration == cal
    # dropping a member changes the combination: the smaller ensemble is uncalibrated until calibrated again
    assert ens.without([1]).uncertainty_calibration == ens.members[0].uncertainty_calibration
    three = DeepEnsemble(ens.members + [ens.members[0]])
    assert not three.uncertainty_calibrated
    with pytest.raises(ValueError, match="fit was given 700 stars"):
        three.calibrate_uncertainties(survey["spectra"][:500], survey["parallax"][:500],
                                      survey["parallax_error"][:500], magnitude=survey["mag"][:500])
