"""The likelihoods against direct numpy evaluation."""
import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal._compat import keras, tf
from astronn_gaiacal.constants import MAGIC_NUMBER
from astronn_gaiacal.nn import losses as L


def _numpy_paper_loss(plx, err, pred, logvar):
    valid = ~((plx == MAGIC_NUMBER) | np.isnan(plx))
    s = np.log(err**2 + np.exp(logvar))
    per = np.where(valid, 0.5 * (pred - plx) ** 2 * np.exp(-s) + 0.5 * s, 0.0)
    return per * len(plx) / valid.sum()


@pytest.fixture
def batch():
    # negative parallax, a -9999 star, a NaN star, a huge sigma
    plx = np.array([1.2, -0.3, MAGIC_NUMBER, np.nan, 0.5, 2.0])
    err = np.array([0.05, 0.2, 0.1, 0.1, 50.0, 0.01])
    pred = np.array([1.0, 0.1, 0.7, 0.7, 0.4, 2.1])
    logvar = np.array([-3.0, -2.0, -1.0, -1.0, -4.0, -6.0])
    return plx, err, pred, logvar


def _packed(plx, err, pred, logvar):
    return np.stack([plx, err], -1).astype(np.float64), np.stack([pred, logvar], -1).astype(np.float64)


def test_paper_loss_matches_numpy(batch):
    yt, yp = _packed(*batch)
    got = L.gaia_gaussian_nll(yt, yp).numpy()
    np.testing.assert_allclose(got, _numpy_paper_loss(*batch), rtol=1e-10)
    assert got[2] == 0 and got[3] == 0
    # mean over the batch equals the mean over valid stars only
    valid = _numpy_paper_loss(*batch)[[0, 1, 4, 5]] / 1.5
    assert np.isclose(L.GaiaGaussianNLL()(yt, yp).numpy(), valid.mean())


def test_large_sigma_is_dominated_by_gaia_error(batch):
    plx, err, pred, logvar = batch
    yt, yp = _packed(*batch)
    got = L.gaia_gaussian_nll(yt, yp).numpy()[4] / 1.5
    # s ~ ln(2500): loss ~ 0.5*0.01/2500 + 0.5*ln(2500)
    assert np.isclose(got, 0.5 * 0.1**2 / (2500 + np.exp(-4)) + 0.5 * np.log(2500 + np.exp(-4)), rtol=1e-10)


def test_student_t_matches_numpy_and_gaussian_limit(batch):
    plx, err, pred, logvar = batch
    yt, yp = _packed(*batch)
    nu = 3.0
    s = np.log(err**2 + np.exp(logvar))
    valid = np.isfinite(plx) & (plx != MAGIC_NUMBER)
    per = np.where(valid, 0.5 * s + 0.5 * (nu + 1) * np.log1p((pred - plx) ** 2 * np.exp(-s) / nu), 0.0)
    np.testing.assert_allclose(L.gaia_student_t_nll(yt, yp, nu=nu).numpy(), per * 6 / 4, rtol=1e-10)
    big = L.gaia_student_t_nll(yt, yp, nu=1e9).numpy()
    np.testing.assert_allclose(big, L.gaia_gaussian_nll(yt, yp).numpy(), rtol=1e-6)
    # robust: a 10-sigma outlier costs far less than under the Gaussian
    yt1, yp1 = _packed(np.array([0.0]), np.array([0.1]), np.array([1.0]), np.array([-20.0]))
    assert L.gaia_student_t_nll(yt1, yp1).numpy()[0] < 0.2 * L.gaia_gaussian_nll(yt1, yp1).numpy()[0]


def test_plain_gaussian_ignores_gaia_error(batch):
    plx, err, pred, logvar = batch
    yt, yp = _packed(*batch)
    valid = np.isfinite(plx) & (plx != MAGIC_NUMBER)
    per = np.where(valid, 0.5 * (pred - plx) ** 2 * np.exp(-logvar) + 0.5 * logvar, 0.0)
    np.testing.assert_allclose(L.gaussian_nll(yt, yp).numpy(), per * 6 / 4, rtol=1e-10)


def test_all_masked_batch_is_zero_not_nan():
    yt, yp = _packed(np.array([MAGIC_NUMBER, np.nan]), np.array([0.1, 0.1]), np.array([1.0, 1.0]), np.array([0.0, 0.0]))
    assert np.all(L.gaia_gaussian_nll(yt, yp).numpy() == 0.0)


def test_gradient_is_finite_with_masked_stars(batch):
    yt, yp = _packed(*batch)
    yp = tf.Variable(yp)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(L.gaia_gaussian_nll(yt, yp))
    grad = tape.gradient(loss, yp).numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad[[2, 3]] == 0)


@pytest.mark.parametrize("cls,kw", [(L.GaiaGaussianNLL, {}), (L.GaiaStudentTNLL, {"nu": 7.0}), (L.GaussianNLL, {})])
def test_loss_config_roundtrip(cls, kw, batch):
    loss = cls(**kw)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is cls and clone.get_config() == loss.get_config()
    yt, yp = _packed(*batch)
    assert np.isclose(loss(yt, yp).numpy(), clone(yt, yp).numpy())


def test_registered_in_astronn_losses():
    from astroNN.nn.losses import losses_lookup

    assert losses_lookup("gaia_gaussian_nll") is L.gaia_gaussian_nll
    assert losses_lookup("GaiaStudentTNLL") is L.GaiaStudentTNLL
    assert losses_lookup("gaussian_nll") is L.gaussian_nll


def test_compiled_model_with_loss_saves_and_loads(tmp_path):
    inp = keras.Input((3,))
    out = keras.layers.Dense(2)(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=L.GaiaStudentTNLL(nu=5.0))
    path = str(tmp_path / "m.h5")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, L.GaiaStudentTNLL) and loaded.loss.nu == 5.0


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss"):
        L.loss_from_name("huber")


@pytest.mark.parametrize("loss", [L.gaia_gaussian_nll, L.gaia_student_t_nll])
def test_an_additive_fakemag_error_is_exactly_the_partner_of_a_magnitude_trend(loss):
    """Fakemag + c with the offset - c 10^(-m/5): the same parallaxes and the same loss for every star, under
    either variance rule, so one catalogue cannot fix c (docs/calibration.rst, "The partner"); a plain
    offset change alone does change the loss."""
    from astronn_gaiacal.nn.layers import FakemagToParallax

    rng = np.random.default_rng(3)
    n = 64
    fakemag = rng.uniform(10.0, 500.0, (n, 1)).astype(np.float32)
    mag = rng.uniform(7.0, 12.5, (n, 1)).astype(np.float32)
    offset = rng.normal(-0.05, 0.02, (n, 1)).astype(np.float32)
    logvar = np.log((0.08 * fakemag) ** 2).astype(np.float32)
    true_plx = fakemag[:, 0] * 10 ** (-mag[:, 0] / 5)
    err = rng.uniform(0.02, 0.1, n)
    y_true = np.stack([true_plx + rng.normal(0, err), err], -1).astype(np.float32)
    c = np.float32(-6.0)
    partner = (offset - c * 10 ** (-mag / 5)).astype(np.float32)
    for rule in ("exact", "astronn"):
        layer = FakemagToParallax(with_offset=True, with_variance=True, variance_propagation=rule)
        plx0, s0 = layer([fakemag, mag, offset, logvar])
        plx1, s1 = layer([fakemag + c, mag, partner, logvar])
        np.testing.assert_allclose(plx1.numpy(), plx0.numpy(), rtol=2e-5, atol=1e-7)
        before = loss(y_true, tf.concat([plx0, s0], -1)).numpy()
        np.testing.assert_allclose(loss(y_true, tf.concat([plx1, s1], -1)).numpy(), before, rtol=1e-4, atol=1e-5)
        plx2, s2 = layer([fakemag, mag, partner, logvar])  # the offset's change without the fakemag's
        assert np.max(np.abs(loss(y_true, tf.concat([plx2, s2], -1)).numpy() - before)) > 0.01
