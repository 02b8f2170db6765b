"""The calibrated zero-point a model carries from training, and the recipe defaults of ``train``."""
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from astronn_gaiacal import pipeline, summaries
from astronn_gaiacal.constants import TRAINING_RECIPES, training_recipe
from astronn_gaiacal.models import load
from astronn_gaiacal.models.protocol import ZeropointCalibrationWarning
from astronn_gaiacal.zeropoint.calibrated import TREND_ESTIMATE, CalibratedZeropoint
from astronn_gaiacal.zeropoint.trends import fit_zeropoint_trend

from _toy import N_PIX, toy_model, toy_survey


def _trend_case(seed=0, n=4000, scatter=0.0):
    """Stars whose Gaia parallaxes are s * model + c + b (G - 15) + a (G - 15)^2, model parallaxes known."""
    rng = np.random.default_rng(seed)
    model = rng.uniform(0.1, 2.0, n)
    g = rng.uniform(10.0, 17.0, n)
    err = rng.uniform(0.02, 0.06, n)
    truth = dict(s=1.03, c=-40.0, b=-6.0, a=1.5)  # uas, uas/mag, uas/mag^2
    zp = (truth["c"] + truth["b"] * (g - 15) + truth["a"] * (g - 15) ** 2) / 1000
    sigma = np.hypot(err, scatter * model)
    plx = truth["s"] * model + zp + rng.normal(0, sigma)
    return plx, err, model, g, truth


def test_trend_refit_is_the_weighted_least_squares_answer():
    """With no scatter the likelihood is Gaussian in linear parameters: the fit is closed-form WLS."""
    plx, err, model, g, _ = _trend_case()
    fit = fit_zeropoint_trend(plx, err, model, {"phot_g_mean_mag": g}, scatter=0.0, likelihood="gaussian")
    pivot = fit.pivots[0]
    design = np.stack([model, np.ones_like(g), g - pivot, (g - pivot) ** 2], axis=1)
    w = 1 / err**2
    normal = design.T @ (design * w[:, None])
    beta = np.linalg.solve(normal, design.T @ (w * plx))
    cov = np.linalg.inv(normal)
    assert fit.scale == pytest.approx(beta[0], rel=1e-6)
    np.testing.assert_allclose(fit.coefficients / 1000, [beta[1], beta[2], beta[3]], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.covariance)) / 1000, np.sqrt(np.diag(cov))[1:], rtol=1e-3)


def test_calibrated_trend_per_star_values_and_round_trip():
    plx, err, model, g, truth = _trend_case(seed=1, scatter=0.05)
    fit = fit_zeropoint_trend(plx, err, model, {"phot_g_mean_mag": g}, likelihood="gaussian")
    cal = CalibratedZeropoint(TREND_ESTIMATE, fit)
    again = CalibratedZeropoint.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal and again.is_trend and again.features == ("phot_g_mean_mag",)
    x = np.array([9.0, 12.0, 15.0, 17.5, np.nan])  # outside the valid range too, and a missing feature
    zp, zp_err = again.per_star({"phot_g_mean_mag": x}, x.size)
    c, b, a = fit.coefficients
    dx = x - fit.pivots[0]
    np.testing.assert_allclose(zp.to_value(u.uas)[:4], (c + b * dx + a * dx**2)[:4], rtol=1e-12)
    design = np.stack([np.ones_like(dx), dx, dx**2], axis=1)[:4]
    np.testing.assert_allclose(zp_err.to_value(u.uas)[:4],
                               np.sqrt(np.einsum("ij,jk,ik->i", design, fit.covariance, design)), rtol=1e-12)
    assert np.isnan(zp[4]) and np.isnan(zp_err[4])
    # the truth, 3 sigma, where the stars are (pivot 15: the injected level there is c)
    at_pivot = again.per_star({"phot_g_mean_mag": np.array([15.0])}, 1)
    assert abs(at_pivot[0].to_value(u.uas)[0] - truth["c"]) < 3 * at_pivot[1].to_value(u.uas)[0] + 1e-9


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory):
    data = toy_survey(600, seed=3, n_pixels=N_PIX, zeropoint=-0.05)
    net = toy_model("constant", epochs=3)
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
    folder = tmp_path_factory.mktemp("cal") / "model"
    net.save(str(folder))
    return net, data, str(folder)


def test_training_stores_the_refit_on_its_training_set(constant_model):
    net, data, folder = constant_model
    cal = net.zeropoint_calibration
    assert cal is not None and cal.estimate == net.default_estimate and cal.data == "training set"
    independent = net.refit_zeropoint(data["spectra"], data["parallax"], data["parallax_error"],
                                      magnitude=data["mag"])  # the MC means are seeded per call: a close value
    assert cal.fit.value.to_value(u.uas) == pytest.approx(independent.value.to_value(u.uas),
                                                          abs=0.3 * independent.error.to_value(u.uas))
    assert cal.fit.n_stars == independent.n_stars == 600
    value, error = net.zeropoint()
    assert value == cal.fit.value and error == cal.fit.error
    learned, learned_err = net.zeropoint(estimate="learned", mc_num=20)
    assert learned != value and learned_err > 0 * u.uas
    loaded = load(folder)
    assert loaded.zeropoint_calibration == cal


def test_reports_and_per_star_values_use_the_calibrated_estimate(constant_model):
    net, data, folder = constant_model
    summary = summaries.model_summary(load(folder), folder)
    cal = net.zeropoint_calibration
    assert summary["zeropoint_calibrated"] and summary["zeropoint_estimate"] == cal.estimate
    assert summary["zeropoint_uas"] == pytest.approx(cal.fit.value.to_value(u.uas))
    assert summary["learned_zeropoint_estimate"] == "mc" and np.isfinite(summary["learned_zeropoint_uas"])
    table = Table({"x": np.arange(5.0)})
    zp, zp_err = pipeline.table_zeropoints(net, table)
    np.testing.assert_allclose(zp.to_value(u.uas), cal.fit.value.to_value(u.uas))
    learned, _ = pipeline.table_zeropoints(net, table, estimate="learned", mc_num=10)
    assert not np.allclose(learned.value, zp.value)
    with pytest.raises(ValueError, match="estimate"):
        pipeline.table_zeropoints(net, table, estimate="refit")


def test_a_model_without_calibration_says_so(constant_model):
    net, _, _ = constant_model
    saved = net.zeropoint_calibration
    try:
        net.zeropoint_calibration = None
        with pytest.warns(ZeropointCalibrationWarning):
            net.zeropoint(mc_num=5)
        with pytest.warns(ZeropointCalibrationWarning):
            pipeline.table_zeropoints(net, Table({"x": [1.0]}), mc_num=5)
        summary = summaries.model_summary(net)
        assert summary["zeropoint_calibrated"] is False and summary["zeropoint_estimate"] == "mc"
        with pytest.raises(ValueError, match="no calibrated"):
            net.zeropoint(estimate="calibrated")
    finally:
        net.zeropoint_calibration = saved


def test_multivariate_model_carries_its_trend(tmp_path):
    def zp(f):
        return -0.04 - 0.006 * (f["phot_g_mean_mag"] - 15)

    data = toy_survey(600, seed=4, n_pixels=N_PIX, zeropoint=zp)
    net = toy_model("multivariate", epochs=3)
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"],
            offset_features=data["features"])
    cal = net.zeropoint_calibration
    assert cal.is_trend and cal.estimate == TREND_ESTIMATE and set(cal.features) == set(net.offset_features)
    pivots = {name: float(np.median(data["features"][name])) for name in net.offset_features}
    assert cal.fit.pivots == tuple(pivots[name] for name in cal.fit.features)
    independent = net.refit_zeropoint_trend(data["spectra"], data["parallax"], data["parallax_error"],
                                            data["features"], magnitude=data["mag"], pivots=pivots)
    np.testing.assert_allclose(cal.fit.coefficients, independent.coefficients,
                               atol=float(np.max(np.sqrt(np.diag(independent.covariance)))))
    table = Table(data["features"])
    zp_cal, err_cal = pipeline.table_zeropoints(net, table)
    expected, expected_err = cal.fit(data["features"], extrapolate=True)
    np.testing.assert_allclose(zp_cal.to_value(u.uas), expected.to_value(u.uas))
    np.testing.assert_allclose(err_cal.to_value(u.uas), expected_err.to_value(u.uas))
    folder = net.save(str(tmp_path / "mv"))
    summary = summaries.model_summary(load(folder))
    assert summary["zeropoint_calibrated"] and summary["zeropoint_calibration"]["estimate"] == TREND_ESTIMATE
    assert set(summary["zeropoint_calibration"]["trends"]) == set(net.offset_features)


def test_recipe_by_size():
    assert [m for m, _ in TRAINING_RECIPES] == sorted((m for m, _ in TRAINING_RECIPES), reverse=True)
    small, large = training_recipe(3000), training_recipe(35_000)
    assert small == {"epochs": 70, "lr": 3e-3, "weight_averaging": 0.35, "ensemble": 4}
    assert large["ensemble"] == 5 and large["lr"] == 1e-3
    assert training_recipe(9_999) == small and training_recipe(10_000) == large


class _Stop(Exception):
    pass


@pytest.mark.parametrize("given, expected", [
    ({}, {"n_members": 4, "epochs": 70, "lr": 3e-3, "weight_averaging": 0.35}),
    ({"epochs": 2, "ensemble": 3}, {"n_members": 3, "epochs": 2, "lr": 3e-3, "weight_averaging": 0.35}),
    ({"lr": 1e-4, "weight_averaging": 0.0}, {"n_members": 4, "epochs": 70, "lr": 1e-4, "weight_averaging": 0.0}),
])
def test_train_fills_what_is_not_given_from_the_recipe(monkeypatch, given, expected):
    """``pipeline.train`` with no settings trains what the recipe says (the members are built, not trained)."""
    from astronn_gaiacal.io.dataset import Dataset
    from astronn_gaiacal.models import DeepEnsemble

    seen = {}

    def record(factory, n_members, **kwargs):
        member = factory()
        seen.update(n_members=n_members, epochs=member.max_epochs, lr=member.lr,
                    weight_averaging=member.weight_averaging)
        raise _Stop

    monkeypatch.setattr(DeepEnsemble, "train", staticmethod(record))
    data = toy_survey(300, seed=5, n_pixels=N_PIX)
    ds = Dataset(data["spectra"], columns={"mag": data["mag"], "parallax": data["parallax"] * u.mas,
                                           "parallax_error": data["parallax_error"] * u.mas})
    with pytest.raises(_Stop):
        pipeline.train(ds, model="ToyApogeeBCNN", offset="constant", **given)
    assert seen["n_members"] == expected["n_members"] and seen["epochs"] == expected["epochs"]
    assert seen["lr"] == pytest.approx(expected["lr"])
    assert seen["weight_averaging"] == pytest.approx(expected["weight_averaging"])


def test_train_fits_the_snr_form_when_the_dataset_has_snr_and_pixel_errors():
    from astronn_gaiacal.io.dataset import Dataset

    data = toy_survey(500, seed=6, n_pixels=N_PIX)
    n = len(data["mag"])
    columns = {"mag": data["mag"], "parallax": data["parallax"] * u.mas,
               "parallax_error": data["parallax_error"] * u.mas, "snr": np.full(n, 200.0)}
    ds = Dataset(data["spectra"], np.full(data["spectra"].shape, 0.005, np.float32), columns=columns)
    net, _ = pipeline.train(ds, model="ToyApogeeBCNN", offset="constant", epochs=2, ensemble=1, progress=False)
    form = net.uncertainty_calibration.snr_dependence
    assert form is not None and form["snr_range"][1] == 200.0 and form["scale_inf"] > 0
    assert net.zeropoint_calibration is not None and net.zeropoint_calibration.fit.n_stars == n


def test_a_negative_luminosity_scale_keeps_no_calibration():
    """Gaia parallaxes that fall as the network's rise: the trend refit's scale is negative, nothing is kept."""
    data = toy_survey(600, seed=4, n_pixels=N_PIX)
    net = toy_model("multivariate", epochs=2)
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"],
            offset_features=data["features"], calibrate_zeropoint=False)
    model_plx = net.member_parallaxes(data["spectra"], magnitude=data["mag"]).mean(0)
    rng = np.random.default_rng(1)
    anti = 2 * np.median(model_plx) - model_plx + rng.normal(0, 0.01, model_plx.size)  # scale -1 by construction
    with pytest.raises(ValueError, match="luminosity scale"):
        net.calibrate_zeropoint(data["spectra"], anti, np.full(anti.size, 0.01), magnitude=data["mag"],
                                offset_features=data["features"])
    assert net.zeropoint_calibration is None
    with pytest.warns(ZeropointCalibrationWarning, match="luminosity scale"):
        net._calibrate_zeropoint_after_fit(data["spectra"], anti, np.full(anti.size, 0.01), data["mag"],
                                           data["features"])
    assert net.zeropoint_calibration is None
