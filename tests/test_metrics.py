"""sigma_MAD (paper eq. 10), median bias and fractional residuals, missing-value aware."""
import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.constants import MAGIC_NUMBER as M
from astronn_gaiacal.metrics import accuracy, fractional_residuals, median_bias, plot_fractional_residuals, sigma_mad


def test_hand_computed():
    r = [0.1, -0.1, 0.0, 0.2, M, np.nan]
    # valid: 0.1, -0.1, 0, 0.2 -> median 0.05; |r - 0.05| = .05, .15, .05, .15 -> median 0.1
    assert median_bias(r) == pytest.approx(0.05)
    assert sigma_mad(r) == pytest.approx(0.14826)
    masked = np.ma.masked_array([0.1, -0.1, 0.0, 0.2, 100.0], mask=[0, 0, 0, 0, 1])
    assert sigma_mad(masked) == pytest.approx(0.14826)


def test_gaussian_scatter(rng):
    x = rng.normal(0.02, 0.08, 200_000)
    assert sigma_mad(x) == pytest.approx(0.08, rel=0.01)
    assert median_bias(x) == pytest.approx(0.02, abs=0.001)
    # the definition, computed directly
    assert sigma_mad(x) == pytest.approx(1.4826 * np.median(np.abs(x - np.median(x))), rel=1e-14)


def test_fractional_residuals_and_accuracy():
    ref = np.array([2.0, 4.0, 0.0, M, 5.0, 1.0])
    pred = np.array([2.2, 3.6, 1.0, 1.0, np.nan, 1.0])
    r = fractional_residuals(pred, ref)
    np.testing.assert_allclose(r[:2], [0.1, -0.1])
    assert np.isnan(r[2:5]).all() and r[5] == 0.0
    acc = accuracy(pred, ref)
    assert acc == {"n": 3, "median_bias": pytest.approx(0.0), "sigma_mad": pytest.approx(1.4826 * 0.1)}
    # Quantities in convertible units
    r = fractional_residuals([1.1, 2.2] * u.kpc, [1000.0, 2000.0] * u.pc)
    np.testing.assert_allclose(r, [0.1, 0.1])
    with pytest.raises(u.UnitTypeError, match="convertible"):
        fractional_residuals([1.0] * u.kpc, [1.0] * u.mas)
    with pytest.raises(ValueError, match="no valid"):
        sigma_mad([M, np.nan])
    with pytest.raises(ValueError, match="matching shapes"):
        fractional_residuals([1.0, 2.0], [1.0, 2.0, 3.0])


def test_plot(tmp_path, rng):
    ref = rng.uniform(0.5, 2, 500)
    pred = ref * (1 + rng.normal(0, 0.1, 500))
    acc = plot_fractional_residuals(rng.uniform(100, 300, 500), pred, ref, str(tmp_path / "r.png"), xlabel="SNR")
    assert acc["n"] == 500 and acc["sigma_mad"] == pytest.approx(0.1, rel=0.15)
    assert (tmp_path / "r.png").stat().st_size > 10000


def test_figures_leave_the_matplotlib_backend_alone(tmp_path, rng, monkeypatch):
    import matplotlib

    from astronn_gaiacal import plots

    def refuse(*args, **kwargs):
        raise AssertionError("the package switched the matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    ref = rng.uniform(0.5, 2, 50)
    plot_fractional_residuals(ref, ref * 1.01, ref, str(tmp_path / "r.png"))
    assert plots.plot_distance_comparison(ref, ref, tmp_path / "d.png") == str(tmp_path / "d.png")
    assert (tmp_path / "r.png").stat().st_size > 0 and (tmp_path / "d.png").stat().st_size > 0
