"""Maximum-likelihood zero-point refit (astronn_gaiacal.zeropoint.fit) and the models' refit_zeropoint."""
import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.zeropoint.fit import ZeropointFit, _hessian, _information, fit_zeropoint
from astronn_gaiacal.zeropoint.trends import fit_zeropoint_trend, red_clump_anchors
from astronn_gaiacal.zeropoint.estimates import combine_fits, student_t_factor

from _toy import N_PIX, ToyApogeeBCNN, toy_survey

ZP = -0.0523  # mas


def berkson_stars(n, seed, scatter=0.05, gaia_err=0.04):
    """Model parallaxes as conditional means; true parallaxes scatter about them; Gaia adds ZP and noise."""
    rng = np.random.default_rng(seed)
    model = rng.uniform(0.2, 3.0, n)
    true = model * (1 + rng.normal(0, scatter, n))
    err = rng.uniform(0.5, 1.5, n) * gaia_err
    return true + ZP + rng.normal(0, err), err, model


def test_fixed_scatter_is_the_weighted_mean():
    plx, err, model = berkson_stars(500, 1)
    fit = fit_zeropoint(plx, err, model, scatter=0.05)
    w = 1 / (err**2 + (0.05 * model) ** 2)
    assert fit.value.to_value(u.mas) == pytest.approx(np.sum(w * (plx - model)) / np.sum(w), rel=1e-12)
    assert fit.error.to_value(u.mas) == pytest.approx(1 / np.sqrt(np.sum(w)), rel=1e-12)
    assert fit.scatter == 0.05 and fit.scatter_error == 0 and fit.n_stars == 500


def test_pulls_are_unit_normal_and_scatter_recovered():
    pulls, taus = [], []
    for seed in range(40):
        fit = fit_zeropoint(*berkson_stars(3000, seed))
        pulls.append((fit.value.to_value(u.mas) - ZP) / fit.error.to_value(u.mas))
        taus.append((fit.scatter - 0.05) / fit.scatter_error)
    pulls, taus = np.array(pulls), np.array(taus)
    # 40 draws: the mean of N(0,1) has sd 0.16, the sd has sd ~0.11
    assert abs(pulls.mean()) < 0.5 and 0.75 < pulls.std() < 1.3
    assert abs(taus.mean()) < 0.5 and 0.75 < taus.std() < 1.3


def test_analytic_hessian_matches_finite_differences():
    plx, err, model = berkson_stars(400, 7)
    r = plx - model

    def nll(c, log_tau):
        v = err**2 + (np.exp(log_tau) * model) ** 2
        return 0.5 * np.sum((r - c) ** 2 / v + np.log(v))

    c, lt, h = -0.05, np.log(0.07), 1e-4
    num = np.empty((2, 2))
    f = lambda dc, dt: nll(c + dc, lt + dt)  # noqa: E731
    hc, ht = h * 0.01, h
    num[0, 0] = (f(hc, 0) - 2 * f(0, 0) + f(-hc, 0)) / hc**2
    num[1, 1] = (f(0, ht) - 2 * f(0, 0) + f(0, -ht)) / ht**2
    num[0, 1] = num[1, 0] = (f(hc, ht) - f(hc, -ht) - f(-hc, ht) + f(-hc, -ht)) / (4 * hc * ht)
    np.testing.assert_allclose(_hessian(r, model, err, c, np.exp(lt)), num, rtol=1e-4)


def test_quantities_and_units():
    plx, err, model = berkson_stars(300, 3)
    a = fit_zeropoint(plx, err, model)
    b = fit_zeropoint((plx * u.mas).to(u.uas), err * u.mas, (model * u.mas).to(u.arcsec))
    assert b.value.unit == u.uas
    assert b.value.to_value(u.uas) == pytest.approx(a.value.to_value(u.uas), rel=1e-9)
    with pytest.raises(u.UnitTypeError, match="model_parallax"):
        fit_zeropoint(plx, err, model * u.pc)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p, e, m: (p, e[:-1], m), "parallax_error"),
        (lambda p, e, m: (p, e, m[:-2]), "model_parallax"),
        (lambda p, e, m: (np.where(np.arange(p.size) == 4, np.nan, p), e, m), "parallax has 1 NaN"),
        (lambda p, e, m: (p, e, np.where(np.arange(p.size) == 2, -9999.0, m)), "model_parallax has 1"),
        (lambda p, e, m: (p, -e, m), "parallax_error must be > 0"),
        (lambda p, e, m: (p, e, -m), "model_parallax must be > 0"),
        (lambda p, e, m: (p[:2], e[:2], m[:2]), "at least 3 stars"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    with pytest.raises(ValueError, match=match):
        fit_zeropoint(*change(*berkson_stars(50, 0)))


def test_combined_error_is_the_error_of_the_mean():
    # members = one statistical draw shared by all (same stars) + independent training noise
    rng = np.random.default_rng(3)
    k, pulls = 4, []
    for _ in range(4000):
        common = rng.normal(0, 1.0)
        values = -52.3 + common + rng.normal(0, 3.0, k)
        combined, _ = combine_fits([ZeropointFit(v * u.uas, 1.0 * u.uas, 0.05, 0.0, 10) for v in values])
        pulls.append((combined.value.to_value(u.uas) + 52.3) / combined.error.to_value(u.uas))
    # K=4: the sd is estimated from 4 values; with the Student-t factor the 1-sigma interval covers 68 %
    inside = np.mean(np.abs(pulls) < 1)
    assert 0.64 < inside < 0.73 and np.mean(np.abs(pulls) < 2) > 0.9


def test_combine_fits_by_hand():
    fits = [ZeropointFit(v * u.uas, e * u.uas, 0.05, 0.001, 100) for v, e in ((-50, 2), (-54, 2), (-52, 4))]
    combined, parts = combine_fits(fits)
    assert combined.value.to_value(u.uas) == pytest.approx(-52.0)
    stat = np.sqrt((4 + 4 + 16) / 3)
    assert parts["statistical"].to_value(u.uas) == pytest.approx(stat)
    assert parts["member_spread"].to_value(u.uas) == pytest.approx(2.0)  # sample sd of -50, -54, -52
    t3 = 1.3213  # 68.27 % quantile of Student's t, 2 degrees of freedom (tables)
    assert student_t_factor(3) == pytest.approx(t3, abs=1e-4)
    assert parts["ensemble"].to_value(u.uas) == pytest.approx(t3 * 2.0 / np.sqrt(3), rel=1e-4)  # error of their mean
    assert combined.error.to_value(u.uas) == pytest.approx(np.sqrt(stat**2 + t3**2 * 4.0 / 3), rel=1e-4)


def test_model_refit_uses_mc_mean_parallaxes_and_skips_missing():
    data = toy_survey(300, seed=11, n_pixels=N_PIX, zeropoint=-0.1)
    net = ToyApogeeBCNN(offset="constant", lr=2e-3)
    net.max_epochs, net.verbose = 3, 0
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
    net.mc_num = 10
    plx = data["parallax"].copy()
    plx[[3, 17]] = [np.nan, -9999.0]
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    fit = net.refit_zeropoint(data["spectra"], plx, data["parallax_error"], magnitude=data["mag"])
    assert fit.n_stars == 298
    keep = np.isfinite(plx) & (plx != -9999.0)
    tf.keras.utils.set_random_seed(5)
    model_plx, _ = net.predict_parallax(data["spectra"][keep], magnitude=data["mag"][keep])
    expected = fit_zeropoint(plx[keep], data["parallax_error"][keep], model_plx)
    assert fit.value.to_value(u.uas) == pytest.approx(expected.value.to_value(u.uas), rel=1e-6, abs=1e-6)
    with pytest.raises(ValueError, match="parallax_error must have shape"):
        net.refit_zeropoint(data["spectra"], plx, data["parallax_error"][:-1], magnitude=data["mag"])
    # the trend refit sees the same model parallaxes
    tf.keras.utils.set_random_seed(5)
    trend = net.refit_zeropoint_trend(data["spectra"], plx, data["parallax_error"], data["features"],
                                      magnitude=data["mag"], names=["phot_g_mean_mag", "teff"])
    feats = {k: v[keep] for k, v in data["features"].items()}
    again = fit_zeropoint_trend(plx[keep], data["parallax_error"][keep], model_plx, feats, names=["phot_g_mean_mag", "teff"])
    np.testing.assert_allclose(trend.coefficients, again.coefficients, rtol=1e-6, atol=1e-6)
    assert trend.n_stars == 298 and trend.features == ("phot_g_mean_mag", "teff")
    # anchored: the stars' magnitudes and known fakemag reach the fitter, the star without a parallax left out
    known = np.where(np.arange(300) % 10 == 0, 30.0, np.nan)
    tf.keras.utils.set_random_seed(5)
    anchored = net.refit_zeropoint_trend(data["spectra"], plx, data["parallax_error"], data["features"],
                                         magnitude=data["mag"], names=["phot_g_mean_mag"], anchor_fakemag=known,
                                         anchor_fakemag_error=1.5)
    again = fit_zeropoint_trend(plx[keep], data["parallax_error"][keep], model_plx, feats, names=["phot_g_mean_mag"],
                                magnitude=data["mag"][keep], anchor_fakemag=known[keep], anchor_fakemag_error=1.5)
    np.testing.assert_allclose(anchored.coefficients, again.coefficients, rtol=1e-6, atol=1e-6)
    assert anchored.luminosity_offset == pytest.approx(again.luminosity_offset, rel=1e-6)
    assert anchored.n_anchors == 30
    with pytest.raises(ValueError, match="anchor_fakemag must have shape"):
        net.refit_zeropoint_trend(data["spectra"], plx, data["parallax_error"], data["features"], magnitude=data["mag"],
                                  anchor_fakemag=known[:-1], anchor_fakemag_error=1.5)
    with pytest.raises(ValueError, match="anchor_fakemag needs anchor_fakemag_error"):
        net.refit_zeropoint_trend(data["spectra"], plx, data["parallax_error"], data["features"], magnitude=data["mag"],
                                  anchor_fakemag=known)
    # separately: one fit per feature on the same model parallaxes
    tf.keras.utils.set_random_seed(5)
    each = net.refit_zeropoint_trend(data["spectra"], plx, data["parallax_error"], data["features"],
                                     magnitude=data["mag"], names=["phot_g_mean_mag", "teff"], fit_scale=False,
                                     separately=True)
    assert list(each) == ["phot_g_mean_mag", "teff"]
    for name, fit_one in each.items():
        alone = fit_zeropoint_trend(plx[keep], data["parallax_error"][keep], model_plx, {name: feats[name]},
                                    names=[name], fit_scale=False)
        np.testing.assert_allclose(fit_one.coefficients, alone.coefficients, rtol=1e-6, atol=1e-6)
        assert fit_one.features == (name,) and fit_one.scale == 1.0
    with pytest.raises(KeyError, match="bp_rp"):
        net.refit_zeropoint_trend(data["spectra"], plx, data["parallax_error"], {"teff": data["features"]["teff"]},
                                  magnitude=data["mag"], names=["bp_rp"])


def test_scaled_fit_removes_a_luminosity_scale_bias_with_calibrated_errors():
    """Luminosities 3 % high: the constant fit is biased, the intercept of the scaled fit is not."""
    pulls, scale_pulls, const_bias = [], [], []
    for seed in range(40):
        plx, err, model = berkson_stars(3000, 100 + seed)
        model = 1.03 * model
        fit = fit_zeropoint(plx, err, model, fit_scale=True)
        pulls.append((fit.value.to_value(u.mas) - ZP) / fit.error.to_value(u.mas))
        scale_pulls.append((fit.scale - 1 / 1.03) / fit.scale_error)
        const_bias.append(fit_zeropoint(plx, err, model).value.to_value(u.mas) - ZP)
    pulls, scale_pulls = np.array(pulls), np.array(scale_pulls)
    assert abs(pulls.mean()) < 0.5 and 0.75 < pulls.std() < 1.3
    assert abs(scale_pulls.mean()) < 0.5 and 0.75 < scale_pulls.std() < 1.3
    assert np.mean(const_bias) < -0.015  # ~3 % of the weighted mean parallax, far outside its ~1 uas error


def test_scaled_fit_at_fixed_scatter_is_weighted_least_squares():
    plx, err, model = berkson_stars(800, 3)
    fit = fit_zeropoint(plx, err, model, scatter=0.05, fit_scale=True)
    w = 1 / (err**2 + (0.05 * model) ** 2)
    coef, cov = np.polyfit(model, plx, 1, w=np.sqrt(w), cov="unscaled")
    assert fit.scale == pytest.approx(coef[0], rel=1e-9) and fit.value.to_value(u.mas) == pytest.approx(coef[1], rel=1e-9)
    assert fit.error.to_value(u.mas) == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-9)
    assert fit.scale_error == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-9)
    with pytest.raises(ValueError, match="at least 4 stars"):
        fit_zeropoint(plx[:3], err[:3], model[:3], fit_scale=True)


def test_scaled_information_matches_finite_differences():
    plx, err, model = berkson_stars(400, 8)
    theta0 = np.array([-0.05, 0.98, np.log(0.07)])

    def nll(theta):
        c, s, lt = theta
        v = err**2 + (np.exp(lt) * model) ** 2
        return 0.5 * np.sum((plx - s * model - c) ** 2 / v + np.log(v))

    steps = np.array([1e-5, 1e-5, 1e-3])
    num = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * steps[i], np.eye(3)[j] * steps[j]
            num[i, j] = (nll(theta0 + ei + ej) - nll(theta0 + ei - ej) - nll(theta0 - ei + ej)
                         + nll(theta0 - ei - ej)) / (4 * steps[i] * steps[j])
    d = plx - theta0[1] * model - theta0[0]
    design = np.stack([np.ones(model.size), model], axis=1)
    np.testing.assert_allclose(_information(d, design, model, err, np.exp(theta0[2])), num, rtol=1e-4)


def test_combine_fits_carries_the_scale():
    fits = [ZeropointFit(v * u.uas, 2 * u.uas, 0.05, 0.001, 100, s, 0.01) for v, s in ((-50, 0.99), (-54, 1.01))]
    combined, _ = combine_fits(fits)
    assert combined.scale == pytest.approx(1.0)
    assert combined.scale_error == pytest.approx(np.hypot(0.01, student_t_factor(2) * np.std([0.99, 1.01], ddof=1) / np.sqrt(2)))


def _trend_stars(n, seed, scale=0.93):
    """Brighter stars are nearer; the paper's eq. 7 in G plus nothing in colour; luminosities ``scale`` off.

    As :func:`berkson_stars`, the model parallaxes are conditional means: true ones scatter 5 % about them,
    and G tells nothing more about the true parallax (the model parallax already uses the magnitude).
    """
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.2, 3.0, n)
    true = mean * (1 + rng.normal(0, 0.05, n))
    g = 14.0 - 2.5 * np.log10(mean) + rng.normal(0, 0.8, n)
    colour = rng.uniform(1.0, 2.5, n)
    zp = 0.001 * (-55.49 - 0.92 * (g - 16) + 1.18 * (g - 16) ** 2)
    model = scale * mean
    err = rng.uniform(0.02, 0.06, n)
    return true + zp + rng.normal(0, err), err, model, {"phot_g_mean_mag": g, "bp_rp": colour}


def test_trend_fit_coefficients_have_unit_pulls():
    truth = np.array([-55.49, -0.92, 1.18, 0.0, 0.0])  # c, b_G, a_G, b_colour, a_colour (uas; colour pivot 0)
    pulls = []
    for seed in range(30):
        plx, err, model, feats = _trend_stars(4000, 200 + seed)
        fit = fit_zeropoint_trend(plx, err, model, feats)
        pulls.append((fit.coefficients - truth) / np.sqrt(np.diag(fit.covariance)))
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.6) and np.all((pulls.std(axis=0) > 0.7) & (pulls.std(axis=0) < 1.35))


def test_trend_fit_evaluation_and_summaries():
    plx, err, model, feats = _trend_stars(3000, 9)
    fit = fit_zeropoint_trend(plx, err, model, feats, names=["phot_g_mean_mag"])
    g = np.array([12.0, 14.0, 30.0])
    value, error = fit({"phot_g_mean_mag": g})
    c, b, a = fit.coefficients
    expected = c + b * (g - 16) + a * (g - 16) ** 2  # paper pivot G = 16
    np.testing.assert_allclose(value.to_value(u.uas)[:2], expected[:2], rtol=1e-12)
    design = np.stack([np.ones(2), g[:2] - 16, (g[:2] - 16) ** 2], axis=1)
    np.testing.assert_allclose(error.to_value(u.uas)[:2] ** 2, np.diag(design @ fit.covariance @ design.T), rtol=1e-10)
    assert np.isnan(value[2]) and np.isnan(error[2])  # outside the fitted range
    trend = fit.trend("phot_g_mean_mag")
    assert trend.coeffs == pytest.approx((a, b, c)) and trend.pivot == 16.0
    assert trend.valid_range == pytest.approx(tuple(np.quantile(feats["phot_g_mean_mag"], [0.01, 0.99])))
    assert set(fit.to_dict()["trends"]) == {"phot_g_mean_mag"} and fit.to_dict()["scale"] == pytest.approx(1 / 0.93, rel=0.02)
    with pytest.raises(KeyError, match="teff"):
        fit.trend("teff")


def test_trend_fit_bad_input():
    plx, err, model, feats = _trend_stars(100, 1)
    with pytest.raises(KeyError, match="teff"):
        fit_zeropoint_trend(plx, err, model, feats, names=["teff"])
    bad = dict(feats, bp_rp=np.where(np.arange(100) == 7, -9999.0, feats["bp_rp"]))
    with pytest.raises(ValueError, match="feature 'bp_rp' has 1 NaN/-9999 value.*index 7"):
        fit_zeropoint_trend(plx, err, model, bad)
    with pytest.raises(ValueError, match="feature 'bp_rp' has 99 values"):
        fit_zeropoint_trend(plx, err, model, dict(feats, bp_rp=feats["bp_rp"][:-1]))
    with pytest.raises(ValueError, match="at least 8 stars"):
        fit_zeropoint_trend(plx[:5], err[:5], model[:5], {k: v[:5] for k, v in feats.items()})


def _additive_error_stars(n, seed, offset=4.0, n_clump=300, clump=40.0):
    """Fakemag 10-500 (true ones 5 % about the spectrum's), of which ``n_clump`` red-clump stars at ``clump``
    (0.1 mag intrinsic spread); the network's fakemag ``offset`` low; G = K + 2 carries the paper's eq. 7.
    Returns Gaia parallaxes, errors, model parallaxes, G, K, anchors."""
    rng = np.random.default_rng(seed)
    k = rng.uniform(7.0, 12.5, n)
    lum = 10 ** rng.uniform(1.0, 2.7, n)
    lum[:n_clump] = clump
    true_lum = lum * (1 + rng.normal(0, 0.05, n))
    true_lum[:n_clump] = clump * 10 ** rng.normal(0, 0.02, n_clump)
    true = true_lum * 10 ** (-k / 5)
    g = k + 2.0
    zp = 0.001 * (-55.49 - 0.92 * (g - 16) + 1.18 * (g - 16) ** 2)
    err = rng.uniform(0.02, 0.06, n)
    model = (lum - offset) * 10 ** (-k / 5)
    anchors = np.where(np.arange(n) < n_clump, clump, np.nan)
    return true + zp + rng.normal(0, err), err, model, g, k, anchors


#: The paper's eq. 7 at the pivot G = 12: value and slope (uas, uas/mag).
EQ7_AT_12 = (-55.49 + 0.92 * 4 + 1.18 * 16, -0.92 - 2 * 1.18 * 4)


def test_anchored_trend_fit_at_fixed_scatter_is_weighted_least_squares():
    """Parallax rows and anchor rows s (L + c) = L_anchor, solved independently by weighted least squares."""
    plx, err, model, g, k, anchors = _additive_error_stars(2000, 1)
    fit = fit_zeropoint_trend(plx, err, model, {"phot_g_mean_mag": g}, scatter=0.05, magnitude=k,
                              anchor_fakemag=anchors, anchor_fakemag_error=1.9, pivots={"phot_g_mean_mag": 12.0})
    p = 10 ** (-k / 5)
    x = g - 12.0
    rows = np.stack([np.ones_like(x), x, x**2, model, p], axis=1)
    known = np.isfinite(anchors)
    extra = np.zeros((known.sum(), 5))
    extra[:, 3], extra[:, 4] = model[known] / p[known], 1.0
    design = np.concatenate([rows, extra])
    sigma = np.concatenate([np.sqrt(err**2 + (0.05 * model) ** 2), np.full(known.sum(), 1.9)])
    target = np.concatenate([plx, anchors[known]])
    coef, *_ = np.linalg.lstsq(design / sigma[:, None], target / sigma, rcond=None)
    cov = np.linalg.inv((design / sigma[:, None]).T @ (design / sigma[:, None]))
    np.testing.assert_allclose(fit.coefficients, coef[:3] * 1000, rtol=1e-7)
    np.testing.assert_allclose(fit.covariance, cov[:3, :3] * 1e6, rtol=1e-7)
    assert fit.scale == pytest.approx(coef[3], rel=1e-9)
    assert fit.luminosity_offset == pytest.approx(coef[4] / coef[3], rel=1e-7) and fit.n_anchors == 300
    grad = np.array([0, 0, 0, -coef[4] / coef[3] ** 2, 1 / coef[3]])
    assert fit.luminosity_offset_error == pytest.approx(np.sqrt(grad @ cov @ grad), rel=1e-7)
    assert fit.to_dict()["n_anchors"] == 300 and fit.to_dict()["luminosity_offset"] == pytest.approx(fit.luminosity_offset)


@pytest.mark.parametrize("likelihood", [None, "student_t"])
def test_anchors_take_an_additive_luminosity_error_out_of_the_trend(likelihood):
    """A network 4 fakemag low (a tenth of a red-clump star) puts a false trend in G into the plain refit;
    anchored on 300 red-clump stars, the level and slope at the pivot and the offset have unit pulls."""
    pulls, plain_slopes = [], []
    for seed in range(12):
        plx, err, model, g, k, anchors = _additive_error_stars(6000, 40 + seed)
        feats, piv = {"phot_g_mean_mag": g}, {"phot_g_mean_mag": 12.0}
        fit = fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors,
                                  anchor_fakemag_error=40.0 * 0.046, pivots=piv, likelihood=likelihood)
        c, b = fit.coefficients[:2]
        ce, be = np.sqrt(np.diag(fit.covariance))[:2]
        pulls.append([(c - EQ7_AT_12[0]) / ce, (b - EQ7_AT_12[1]) / be,
                      (fit.luminosity_offset - 4.0) / fit.luminosity_offset_error])
        plain_slopes.append(fit_zeropoint_trend(plx, err, model, feats, pivots=piv).coefficients[1])
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.7) and np.all(pulls.std(axis=0) < 1.5), pulls
    assert np.median(plain_slopes) < 2 * EQ7_AT_12[1]  # the partner: more than twice the true slope


def test_red_clump_anchors_are_the_clump_luminosity():
    """M_Ks = -1.61 +- 0.17 mag: fakemag 10^(M/5 + 2) = 47.64 on the clump, its error ln(10)/5 x 47.64 x 0.17."""
    fakemag, error = red_clump_anchors(np.array([1, 0, 1]))
    np.testing.assert_allclose(fakemag[[0, 2]], 10 ** 1.678, rtol=1e-12)
    np.testing.assert_allclose(error[[0, 2]], np.log(10) / 5 * 10 ** 1.678 * 0.17, rtol=1e-12)
    assert np.isnan(fakemag[1]) and np.isnan(error[1])
    np.testing.assert_allclose(red_clump_anchors([True], absmag=-1.0, spread=0.1)[0], [10 ** 1.8])
    for bad in ([1, 2], [1.0, np.nan], ["rc", "rgb"]):
        with pytest.raises(ValueError, match="boolean"):
            red_clump_anchors(bad)


def test_anchored_trend_fit_bad_input():
    plx, err, model, g, k, anchors = _additive_error_stars(400, 2)
    feats = {"phot_g_mean_mag": g}
    with pytest.raises(ValueError, match="anchor_fakemag needs magnitude"):
        fit_zeropoint_trend(plx, err, model, feats, anchor_fakemag=anchors, anchor_fakemag_error=2.0)
    with pytest.raises(ValueError, match="anchor_fakemag needs anchor_fakemag_error"):
        fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors)
    with pytest.raises(ValueError, match="anchor_fakemag has 399 values"):
        fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors[:-1], anchor_fakemag_error=2.0)
    with pytest.raises(ValueError, match="magnitude must hold 400 finite values"):
        fit_zeropoint_trend(plx, err, model, feats, magnitude=np.where(np.arange(400) == 3, np.nan, k))
    with pytest.raises(ValueError, match="anchor_fakemag must be positive"):
        fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=-anchors, anchor_fakemag_error=2.0)
    with pytest.raises(ValueError, match="anchor_fakemag_error finite and positive"):
        fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors, anchor_fakemag_error=0.0)
    free = fit_zeropoint_trend(plx, err, model, feats, magnitude=k)  # the term without anchors: fitted, no anchor
    assert free.n_anchors == 0 and np.isfinite(free.luminosity_offset) and free.luminosity_offset_error > 0
    plain = fit_zeropoint_trend(plx, err, model, feats)
    assert np.isnan(plain.luminosity_offset) and "luminosity_offset" not in plain.to_dict()
    with pytest.raises(ValueError, match="anchor_fakemag_error has 3 values"):
        fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors, anchor_fakemag_error=[1, 2, 3])
    per_star = fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors,
                                   anchor_fakemag_error=np.full(400, 2.0))
    same = fit_zeropoint_trend(plx, err, model, feats, magnitude=k, anchor_fakemag=anchors, anchor_fakemag_error=2.0)
    np.testing.assert_allclose(per_star.coefficients, same.coefficients, rtol=1e-10)


def test_curved_fit_removes_a_parallax_dependent_luminosity_error():
    """True parallaxes scatter about 0.97 m + 0.01 m^2 of the model ones m (luminosities ~3 % high at small
    parallax, right at 3 mas): only the curved fit's intercept is unbiased."""
    pulls, scaled_bias, const_bias = [], [], []
    for seed in range(40):
        rng = np.random.default_rng(300 + seed)
        model = rng.uniform(0.2, 3.0, 3000)
        true = model * (0.97 + 0.01 * model) * (1 + rng.normal(0, 0.05, model.size))
        err = rng.uniform(0.02, 0.06, model.size)
        plx = true + ZP + rng.normal(0, err)
        fit = fit_zeropoint(plx, err, model, fit_curvature=True)
        pulls.append((fit.value.to_value(u.mas) - ZP) / fit.error.to_value(u.mas))
        scaled_bias.append(fit_zeropoint(plx, err, model, fit_scale=True).value.to_value(u.mas) - ZP)
        const_bias.append(fit_zeropoint(plx, err, model).value.to_value(u.mas) - ZP)
        assert fit.curvature_error > 0
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.6 and 0.7 < pulls.std() < 1.35
    assert np.mean(const_bias) < -0.01 and abs(np.mean(scaled_bias)) > 0.002  # several uas either way
    with pytest.raises(ValueError, match="at least 5 stars"):
        fit_zeropoint(plx[:4], err[:4], model[:4], fit_curvature=True)


def _population_survey(rng, n, error=0.0):
    """Model parallaxes of n stars; the most luminous quarter's luminosities are off by ``error``."""
    model = rng.uniform(0.2, 3.0, n)
    lum = rng.lognormal(0.0, 0.6, n)
    true = model * (1 + rng.normal(0, 0.04, n))
    wrong = np.where(lum > np.quantile(lum, 0.75), model * (1 + error), model)
    gaia = true - 0.05 + rng.normal(0, 0.03, n)
    return gaia, wrong, lum


def test_consistency_factor_is_the_pdg_factor_and_one_for_a_right_model(rng):
    from astronn_gaiacal.zeropoint.fit import consistency_factor

    gaia, model, lum = _population_survey(rng, 4000)
    factor, fits = consistency_factor(gaia, 0.03, model, lum, n_groups=4)
    values = np.array([f.value.to_value(u.uas) for f in fits])
    errors = np.array([f.error.to_value(u.uas) for f in fits])
    w = errors**-2
    chi2 = np.sum(w * (values - np.sum(w * values) / w.sum()) ** 2)
    assert factor == pytest.approx(np.sqrt(max(1.0, chi2 / 3)))  # independent computation
    assert [f.n_stars for f in fits] == [1000] * 4
    # a right model: S stays 1 in about P(chi2_3 < 3) = 61 % of surveys
    ones = []
    for seed in range(60):
        g, m, lu = _population_survey(np.random.default_rng(seed), 1200)
        ones.append(consistency_factor(g, 0.03, m, lu)[0] == 1.0)
    assert 0.42 < np.mean(ones) < 0.80


def test_consistency_factor_grows_with_a_population_luminosity_error(rng):
    """A 4 % luminosity error of the most luminous quarter biases the constant refit; S widens its error to cover it."""
    from astronn_gaiacal.zeropoint.fit import consistency_factor

    gaia, model, lum = _population_survey(rng, 8000, error=0.04)
    fit = fit_zeropoint(gaia, 0.03, model)
    miss = abs(fit.value.to_value(u.uas) + 50.0)
    factor, _ = consistency_factor(gaia, 0.03, model, lum)
    assert miss > 3 * fit.error.to_value(u.uas)  # the plain statistical error does not cover it
    assert factor > 2 and miss < 2 * factor * fit.error.to_value(u.uas)


def test_consistency_factor_bad_input():
    from astronn_gaiacal.zeropoint.fit import consistency_factor

    x = np.linspace(0.5, 2.0, 40)
    with pytest.raises(ValueError, match="groups must have one finite value per star"):
        consistency_factor(x, 0.03, x, x[:-1])
    with pytest.raises(ValueError, match="n_groups"):
        consistency_factor(x, 0.03, x, x, n_groups=1)


def test_consistency_inflated_keeps_the_value_and_scales_the_statistical_term(rng):
    from astronn_gaiacal.zeropoint.estimates import consistency_inflated
    from astronn_gaiacal.zeropoint.fit import consistency_factor

    gaia, model, lum = _population_survey(rng, 4000, error=0.04)
    mag = 5 * np.log10(lum / model)  # so that model parallax * 10**(mag/5) orders the stars as lum
    members = np.array([model * 1.002, model * 0.998])
    combined = combine_fits([fit_zeropoint(gaia, 0.03, p) for p in members])
    fit, parts = consistency_inflated(combined, gaia, 0.03, members, mag)
    factor, _ = consistency_factor(gaia, 0.03, members.mean(axis=0), members.mean(axis=0) * 10 ** (mag / 5))
    assert parts["consistency_factor"] == pytest.approx(factor) and factor > 1
    assert fit.value == combined[0].value
    stat, ens = combined[1]["statistical"].to_value(u.uas), combined[1]["ensemble"].to_value(u.uas)
    assert fit.error.to_value(u.uas) == pytest.approx(np.hypot(factor * stat, ens))


def _members(rng, scatters, n=3000):
    """One survey (Berkson stars), one model-parallax vector per member with the given fractional scatter."""
    true = rng.uniform(0.2, 3.0, n)
    err = rng.uniform(0.5, 1.5, n) * 0.04
    plx = true + ZP + rng.normal(0, err)
    models = [true * np.exp(rng.normal(0, s, n)) for s in scatters]  # a failed member: a much worse luminosity
    return plx, err, models


def test_failed_members_are_those_with_several_times_the_best_scatter(rng):
    from astronn_gaiacal.zeropoint.estimates import failed_members

    plx, err, models = _members(rng, (0.05, 0.08, 0.06, 0.4))
    fits = [fit_zeropoint(plx, err, m) for m in models]
    # the fitted scatter is each member's own precision (independently injected above)
    np.testing.assert_allclose([f.scatter for f in fits[:3]], (0.05, 0.08, 0.06), rtol=0.15)
    assert fits[3].scatter > 0.25
    assert failed_members(fits).tolist() == [False, False, False, True]
    assert failed_members(fits, ratio=10).tolist() == [False] * 4
    with pytest.raises(ValueError, match="ratio"):
        failed_members(fits, ratio=1.0)
    with pytest.raises(ValueError, match="fits is empty"):
        failed_members([])


def test_usable_members_leaves_failed_ones_out_with_a_warning(rng):
    from astronn_gaiacal.zeropoint.estimates import usable_members

    plx, err, models = _members(rng, (0.05, 0.06, 0.5))
    fits = [fit_zeropoint(plx, err, m) for m in models]
    with pytest.warns(RuntimeWarning, match=r"member\(s\) \[2\] failed to train"):
        keep = usable_members(fits)
    assert keep.tolist() == [True, True, False]
    # the screened combination recovers the zero-point; the failed member would have pulled it away
    screened, _ = combine_fits([f for f, k in zip(fits, keep) if k])
    assert abs(screened.value.to_value(u.mas) - ZP) < 3 * screened.error.to_value(u.mas)
    # fewer than two good members: all kept, and said so
    with pytest.warns(RuntimeWarning, match="fewer than two"):
        assert usable_members(fits[1:]).tolist() == [True, True]
