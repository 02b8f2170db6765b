"""The Student-t zero-point refits: the Gaussian limit, an independent maximum, outliers, and the models' default.

The independent computation writes the Student-t negative log-likelihood of
:mod:`astronn_gaiacal.nn.losses` (with the refit's scale
``v = sigma^2 + tau^2 model^2``) directly, maximises it with
``scipy.optimize.minimize`` and takes errors from a finite-difference Hessian.
"""
import numpy as np
import pytest
from astropy import units as u
from scipy.optimize import minimize

from astronn_gaiacal.constants import DEFAULT_STUDENT_T_NU
from astronn_gaiacal.models.protocol import ZeropointModel
from astronn_gaiacal.zeropoint.estimates import combine_fits, refits_from_parallaxes
from astronn_gaiacal.zeropoint.fit import consistency_factor, fit_zeropoint
from astronn_gaiacal.zeropoint.likelihood import GAUSSIAN, Likelihood, as_likelihood, likelihood_for_loss
from astronn_gaiacal.zeropoint.trends import fit_zeropoint_trend

TRUE_ZP = -0.0523  # mas


def _stars(seed, n=4000, t_noise=None):
    rng = np.random.default_rng(seed)
    model = rng.uniform(0.2, 3.0, n)  # the conditional-mean prediction; the true parallaxes scatter 5 % about it
    true = model * (1 + rng.normal(0, 0.05, n))
    err = rng.uniform(0.02, 0.08, n)
    noise = rng.standard_normal(n) if t_noise is None else rng.standard_t(t_noise, n)
    gaia = true + TRUE_ZP + err * noise
    return rng, true, err, gaia, model


def _with_outliers(seed, n=6000, binaries=0.05, mismatches=0.05):
    """Binaries (luminosity 2x too high: model parallax sqrt(2) too large) and mismatches (another star's parallax)."""
    rng, true, err, gaia, model = _stars(seed, n)
    u_ = rng.random(n)
    binary = u_ < binaries
    mismatch = (u_ >= binaries) & (u_ < binaries + mismatches)
    model = np.where(binary, np.sqrt(2.0) * model, model)
    other = rng.permutation(true)[: mismatch.sum()]
    gaia = gaia.copy()
    gaia[mismatch] = other + TRUE_ZP + err[mismatch] * rng.standard_normal(mismatch.sum())
    return gaia, err, model


def _t_nll(params, gaia, err, model, nu):
    """Independent Student-t NLL of (zero-point, ln tau), the constant fit."""
    c, log_tau = params
    v = err**2 + (np.exp(log_tau) * model) ** 2
    r = gaia - model - c
    return np.sum(0.5 * np.log(v) + 0.5 * (nu + 1) * np.log(1 + r**2 / (nu * v)))


def _numerical_hessian(f, x, h):
    x = np.asarray(x, float)
    k = x.size
    out = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            e_i, e_j = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            out[i, j] = (f(x + e_i + e_j) - f(x + e_i - e_j) - f(x - e_i + e_j) + f(x - e_i - e_j)) / (4 * h[i] * h[j])
    return out


def test_likelihood_names_and_loss_mapping():
    assert as_likelihood(None) is GAUSSIAN and as_likelihood("gaussian") == GAUSSIAN
    assert as_likelihood("student_t").nu == DEFAULT_STUDENT_T_NU
    assert likelihood_for_loss("gaia_student_t_nll", {"nu": 7}) == Likelihood("student_t", 7.0)
    assert likelihood_for_loss("gaia_student_t_nll", {}).nu == DEFAULT_STUDENT_T_NU
    assert likelihood_for_loss("gaia_gaussian_nll", None) is GAUSSIAN
    with pytest.raises(ValueError, match="likelihood must be one of"):
        as_likelihood("cauchy")
    with pytest.raises(ValueError, match="nu must be"):
        Likelihood("student_t", -1.0)
    with pytest.raises(TypeError):
        as_likelihood(3)


def test_student_t_with_large_nu_is_the_gaussian_fit():
    _, _, err, gaia, model = _stars(1)
    huge = Likelihood("student_t", 1e9)
    for kwargs in ({}, {"fit_scale": True}, {"scatter": 0.03}):
        g = fit_zeropoint(gaia, err, model, **kwargs)
        t = fit_zeropoint(gaia, err, model, likelihood=huge, **kwargs)
        assert t.value.to_value(u.uas) == pytest.approx(g.value.to_value(u.uas), rel=1e-6)
        assert t.error.to_value(u.uas) == pytest.approx(g.error.to_value(u.uas), rel=1e-5)
        assert t.scatter == pytest.approx(g.scatter, rel=1e-5)
        assert t.scatter_error == pytest.approx(g.scatter_error, rel=1e-4, abs=1e-12)
        assert t.scale == pytest.approx(g.scale, rel=1e-8) and g.likelihood == "gaussian"
    g_mag = 14 - 2.5 * np.log10(model)
    gt = fit_zeropoint_trend(gaia, err, model, {"phot_g_mean_mag": g_mag})
    tt = fit_zeropoint_trend(gaia, err, model, {"phot_g_mean_mag": g_mag}, likelihood=huge)
    np.testing.assert_allclose(tt.coefficients, gt.coefficients, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(tt.covariance)), np.sqrt(np.diag(gt.covariance)), rtol=1e-4)


@pytest.mark.parametrize("nu", [2.0, DEFAULT_STUDENT_T_NU, 10.0])
def test_student_t_fit_matches_an_independent_maximum(nu):
    _, _, err, gaia, model = _stars(2, n=3000, t_noise=nu)
    fit = fit_zeropoint(gaia, err, model, likelihood=Likelihood("student_t", nu))
    sol = minimize(_t_nll, [0.0, np.log(0.1)], args=(gaia, err, model, nu), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000})
    c, log_tau = sol.x
    cov = np.linalg.inv(_numerical_hessian(lambda p: _t_nll(p, gaia, err, model, nu), sol.x, [1e-4, 1e-3]))
    assert fit.value.to_value(u.mas) == pytest.approx(c, abs=1e-7)
    assert fit.scatter == pytest.approx(np.exp(log_tau), rel=1e-5)
    assert fit.error.to_value(u.mas) == pytest.approx(np.sqrt(cov[0, 0]), rel=2e-3)
    assert fit.scatter_error == pytest.approx(np.exp(log_tau) * np.sqrt(cov[1, 1]), rel=2e-3)
    assert fit.likelihood == f"student_t(nu={nu:g})"


def test_student_t_scaled_fit_matches_an_independent_maximum():
    """The zero-point with a free luminosity scale at fixed tau: a 2-parameter Student-t regression."""
    _, _, err, gaia, model = _stars(3, n=3000, t_noise=4)
    tau, nu = 0.05, 4.0
    fit = fit_zeropoint(gaia, err, model, scatter=tau, fit_scale=True, likelihood="student_t")

    def nll(p):
        v = err**2 + (tau * model) ** 2
        r = gaia - p[0] - p[1] * model
        return np.sum(0.5 * (nu + 1) * np.log(1 + r**2 / (nu * v)))

    sol = minimize(nll, [0.0, 1.0], method="Nelder-Mead", options={"xatol": 1e-11, "fatol": 1e-11, "maxiter": 20000})
    cov = np.linalg.inv(_numerical_hessian(nll, sol.x, [1e-4, 1e-4]))
    assert fit.value.to_value(u.mas) == pytest.approx(sol.x[0], abs=1e-7)
    assert fit.scale == pytest.approx(sol.x[1], abs=1e-7)
    assert fit.error.to_value(u.mas) == pytest.approx(np.sqrt(cov[0, 0]), rel=2e-3)
    assert fit.scale_error == pytest.approx(np.sqrt(cov[1, 1]), rel=2e-3)


def _pulls(seeds, **kinds):
    out = {"gaussian": [], "student_t": []}
    for seed in seeds:
        gaia, err, model = _with_outliers(seed, **kinds)
        for name in out:
            f = fit_zeropoint(gaia, err, model, likelihood=name)
            out[name].append(((f.value.to_value(u.mas) - TRUE_ZP) * 1000, f.error.to_value(u.uas), f.scatter))
    return {k: np.array(v) for k, v in out.items()}


def test_ten_percent_mismatches_bias_the_gaussian_not_the_student_t():
    """Another star's parallax is a gross outlier: the t's tails remove it, the Gaussian's mean is dragged ~100 uas."""
    r = _pulls(range(10, 16), binaries=0.0, mismatches=0.10)
    pull_t = r["student_t"][:, 0] / r["student_t"][:, 1]
    pull_g = r["gaussian"][:, 0] / r["gaussian"][:, 1]
    assert np.all(np.abs(pull_t) < 2.5) and abs(pull_t.mean()) < 1.0
    assert np.all(pull_g > 5)
    assert np.all(r["student_t"][:, 2] < 0.07) and np.all(r["gaussian"][:, 2] > 0.2)  # core scatter 5 %


def test_ten_percent_gross_outliers_student_t_removes_most_of_the_bias():
    """5 % equal-mass binaries + 5 % mismatches: the Gaussian is biased by ~45 uas, the t by ~4 (docs/calibration.rst).

    A binary's model parallax is sqrt(2) too large; for a distant binary that shift is within
    the scatter, so no per-star robust likelihood rejects it: a few uas of bias remain.
    """
    r = _pulls(range(10, 16))
    bias_t, bias_g = r["student_t"][:, 0].mean(), r["gaussian"][:, 0].mean()
    assert bias_g > 25 and np.all(r["gaussian"][:, 0] / r["gaussian"][:, 1] > 5)
    assert abs(bias_t) < 0.15 * abs(bias_g) and abs(bias_t) < 8
    assert r["student_t"][:, 1].mean() < 0.5 * r["gaussian"][:, 1].mean()


def test_trend_with_mismatches_student_t_recovers_the_slope():
    rng = np.random.default_rng(7)
    n = 20000
    model = rng.uniform(0.2, 3.0, n)
    true = model * (1 + rng.normal(0, 0.05, n))  # the scatter about the model is independent of G:
    g_mag = 14.0 - 2.5 * np.log10(model) + rng.normal(0, 0.8, n)  # G is tied to the model's distance
    zp = 0.001 * (-52.3 - 5.0 * (g_mag - 14))
    err = np.full(n, 0.04)
    gaia = true + zp + err * rng.standard_normal(n)
    mismatch = rng.random(n) < 0.1
    gaia[mismatch] = rng.permutation(true)[: mismatch.sum()] + zp[mismatch] + 0.04 * rng.standard_normal(mismatch.sum())
    feats = {"phot_g_mean_mag": g_mag}
    t = fit_zeropoint_trend(gaia, err, model, feats, pivots={"phot_g_mean_mag": 14.0}, likelihood="student_t")
    g = fit_zeropoint_trend(gaia, err, model, feats, pivots={"phot_g_mean_mag": 14.0})
    bt, bg = t.trend("phot_g_mean_mag"), g.trend("phot_g_mean_mag")
    assert abs(bt.coeffs[1] + 5.0) < 3 * bt.coeffs_err[1] and abs(bt.coeffs[2] + 52.3) < 3 * bt.coeffs_err[2]
    assert abs(t.scale - 1) < 3 * t.scale_error
    assert abs(bg.coeffs[2] + 52.3) > 5 * bg.coeffs_err[2] or abs(bg.coeffs[1] + 5.0) > 5 * bg.coeffs_err[1]
    assert t.to_dict()["likelihood"] == "student_t(nu=4)" and g.to_dict()["likelihood"] == "gaussian"


def test_consistency_factor_and_ensemble_estimates_take_the_likelihood():
    gaia, err, model = _with_outliers(20, binaries=0.0, mismatches=0.10)
    lum = model * 10 ** (np.linspace(8, 12, model.size) / 5)
    s_g, fits_g = consistency_factor(gaia, err, model, lum)
    s_t, fits_t = consistency_factor(gaia, err, model, lum, likelihood="student_t")
    assert {f.likelihood for f in fits_t} == {"student_t(nu=4)"} and {f.likelihood for f in fits_g} == {"gaussian"}
    assert [f.value for f in fits_t] == [fit_zeropoint(gaia[i], err[i], model[i], likelihood="student_t").value
                                         for i in np.array_split(np.argsort(lum, kind="stable"), 4)]
    members = np.stack([model, model * (1 + 0.002 * np.random.default_rng(1).standard_normal(model.size))])
    mag = np.linspace(8, 12, model.size)
    fits = refits_from_parallaxes(members, gaia, err, mag, likelihood="student_t")
    for name in ("refit_ensemble", "refit_scaled_ensemble", "refit_curved_ensemble", "refit_consistency_ensemble"):
        assert fits[name][0].likelihood == "student_t(nu=4)"
    own = [fit_zeropoint(gaia, err, p, likelihood="student_t") for p in members]
    assert fits["refit_ensemble"][0].value == combine_fits(own)[0].value
    assert abs(fits["refit_ensemble"][0].value.to_value(u.mas) - TRUE_ZP) < 3 * fits["refit_ensemble"][0].error.to_value(u.mas)
    gauss = refits_from_parallaxes(members, gaia, err, mag)
    assert gauss["refit_ensemble"][0].likelihood == "gaussian"
    assert gauss["refit_ensemble"][0].value == combine_fits([fit_zeropoint(gaia, err, p) for p in members])[0].value


class _FixedModel(ZeropointModel):
    """A model whose luminosity network is a fixed array of model parallaxes (no TensorFlow)."""

    offset, offset_features, n_features, spectrum_length, band, feature_ranges, mc_num = (
        "constant", [], 0, 2, "Ks", None, 1)

    def __init__(self, model_plx, loss_name, loss_config=None):
        self._plx = np.atleast_2d(model_plx)
        self.loss_name, self.loss_config = loss_name, loss_config or {}

    @property
    def n_members(self):
        return self._plx.shape[0]

    def predict(self, input_data, inputs_err=None, batch_size=None):
        raise NotImplementedError

    def predict_zeropoint(self, features=None, mc_num=None, batch_size=None, shared_masks=False, components=False):
        raise NotImplementedError

    def member_parallaxes(self, input_data, magnitude=None, batch_size=None):
        return self._plx


def test_models_refit_with_their_training_likelihood_by_default():
    gaia, err, model = _with_outliers(30, binaries=0.0, mismatches=0.10)
    spectra, mag = np.zeros((model.size, 2)), np.full(model.size, 10.0)
    robust = _FixedModel(model, "gaia_student_t_nll", {"nu": 5})
    gauss = _FixedModel(model, "gaia_gaussian_nll")
    assert robust.refit_likelihood == Likelihood("student_t", 5.0)
    fit = robust.refit_zeropoint(spectra, gaia, err, magnitude=mag)
    assert fit.likelihood == "student_t(nu=5)"
    assert fit.value == fit_zeropoint(gaia, err, model, likelihood=Likelihood("student_t", 5)).value
    assert gauss.refit_zeropoint(spectra, gaia, err, magnitude=mag).value == fit_zeropoint(gaia, err, model).value
    assert robust.refit_zeropoint(spectra, gaia, err, magnitude=mag, likelihood="gaussian").likelihood == "gaussian"
    feats = {"phot_g_mean_mag": np.linspace(10, 16, model.size)}
    trend = robust.refit_zeropoint_trend(spectra, gaia, err, feats, magnitude=mag, names=["phot_g_mean_mag"])
    assert trend.likelihood == "student_t(nu=5)"


def test_an_ensembles_refits_use_its_members_likelihood():
    from astronn_gaiacal.models import DeepEnsemble

    gaia, err, model = _with_outliers(31, binaries=0.0, mismatches=0.10)
    spectra, mag = np.zeros((model.size, 2)), np.full(model.size, 10.0)
    other = model * (1 + 0.002 * np.random.default_rng(2).standard_normal(model.size))
    ens = DeepEnsemble([_FixedModel(model, "gaia_student_t_nll"), _FixedModel(other, "gaia_student_t_nll")])
    assert ens.refit_likelihood == Likelihood("student_t", DEFAULT_STUDENT_T_NU)
    fit, parts = ens.refit_zeropoint(spectra, gaia, err, magnitude=mag, components=True)
    expect = refits_from_parallaxes(np.stack([model, other]), gaia, err, mag, "student_t")
    assert fit.likelihood == "student_t(nu=4)" and fit.value == expect[ens.default_estimate][0].value
    assert parts["consistency_factor"] == expect["refit_consistency_ensemble"][1]["consistency_factor"]
    assert abs(fit.value.to_value(u.mas) - TRUE_ZP) < 3 * fit.error.to_value(u.mas)


@pytest.mark.filterwarnings("ignore:.*uncertaint")  # the toy's uncertainty calibration is not what is tested
def test_a_trained_student_t_model_refits_with_its_nu_and_survives_saving(tmp_path):
    """End to end: a toy network trained with gaia_student_t_nll (nu=6) refits with the Student-t, also after load."""
    import tensorflow as tf

    from astroNN.models import load_folder

    from _toy import N_PIX, ToyApogeeBCNN, toy_survey

    data = toy_survey(200, seed=3, n_pixels=N_PIX, zeropoint=-0.1)
    net = ToyApogeeBCNN(offset="constant", lr=2e-3, loss="gaia_student_t_nll", loss_config={"nu": 6.0})
    net.max_epochs, net.verbose, net.mc_num = 2, 0, 5
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
    tf.keras.utils.set_random_seed(5)
    fit = net.refit_zeropoint(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
    tf.keras.utils.set_random_seed(5)
    model_plx = net.member_parallaxes(data["spectra"], magnitude=data["mag"])[0]
    expect = fit_zeropoint(data["parallax"], data["parallax_error"], model_plx, likelihood=Likelihood("student_t", 6))
    assert fit.likelihood == "student_t(nu=6)"
    assert fit.value.to_value(u.uas) == pytest.approx(expect.value.to_value(u.uas), rel=1e-6, abs=1e-6)
    folder = net.save(str(tmp_path / "m"))
    assert load_folder(folder).refit_likelihood == Likelihood("student_t", 6.0)
