"""The Table-1 catalogue: hand-computed weighted distances and every fallback."""
import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable

from astronn_gaiacal.catalogue import TABLE1_COLUMNS, build_catalogue, write_catalogue
from astronn_gaiacal.constants import MAGIC_NUMBER
from astronn_gaiacal.metrics import accuracy, fractional_residual, median_bias, sigma_mad


def _cat():
    # star 0: both; 1: no Gaia parallax; 2: no NN (fakemag missing); 3: neither; 4: negative combination
    fakemag = np.array([100.0, 100.0, MAGIC_NUMBER, np.nan, 1.0])
    mag = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    return build_catalogue(
        fakemag=fakemag, fakemag_error=0.2 * np.abs(fakemag), fakemag_model_error=np.r_[0.1 * np.abs(fakemag[:4]), 5.0],
        mag=mag,
        apogee_id=np.array(["a", "b", "c", "d", "e"]), ra=np.arange(5.0), dec=np.arange(5.0),
        gaia_parallax=[1.2, np.nan, 0.8, MAGIC_NUMBER, -0.5] * u.mas, gaia_parallax_error=[0.05, 0.05, 0.04, 0.1, 0.01] * u.mas,
        zeropoint=-0.05 * u.mas, zeropoint_error=0.002 * u.mas,
    )


def test_hand_computed_weighted_distance():
    t = _cat()
    # star 0: NN plx = 100 * 10**-2 = 1.0 mas, model error 0.1; Gaia corrected 1.25 +- hypot(0.05, 0.002)
    g_err = np.hypot(0.05, 0.002)
    w1, w2 = 1 / 0.1**2, 1 / g_err**2
    plx = (w1 * 1.0 + w2 * 1.25) / (w1 + w2)
    err = 1 / np.sqrt(w1 + w2)
    assert t["nn_parallax"][0].to_value(u.mas) == pytest.approx(1.0)
    assert t["nn_parallax_model_error"][0].to_value(u.mas) == pytest.approx(0.1)
    assert t["nn_parallax_error"][0].to_value(u.mas) == pytest.approx(0.2)
    assert t["dist"][0].to_value(u.pc) == pytest.approx(1000.0)
    assert t["dist_error"][0].to_value(u.pc) == pytest.approx(200.0)
    assert t["weighted_dist"][0].to_value(u.pc) == pytest.approx(1000 / plx)
    assert t["weighted_dist_error"][0].to_value(u.pc) == pytest.approx(1000 * err / plx**2)
    # star 1: Gaia missing -> NN alone; star 2: NN missing -> corrected Gaia alone
    assert t["weighted_dist"][1].to_value(u.pc) == pytest.approx(1000.0)
    assert t["weighted_dist_error"][1].to_value(u.pc) == pytest.approx(100.0)
    assert t["weighted_dist"][2].to_value(u.pc) == pytest.approx(1000 / 0.85)
    assert t["weighted_dist_error"][2].to_value(u.pc) == pytest.approx(1000 * np.hypot(0.04, 0.002) / 0.85**2)
    # star 3: neither; star 4: combination <= 0 has no distance
    assert np.isnan(t["weighted_dist"][3]) and np.isnan(t["dist"][3])
    w1, w2 = 1 / 0.05**2, 1 / np.hypot(0.01, 0.002) ** 2
    assert (w1 * 0.01 + w2 * (-0.45)) < 0 and np.isnan(t["weighted_dist"][4])


def test_fits_file_units_and_missing(tmp_path):
    path = tmp_path / "cat.fits"
    write_catalogue(_cat(), str(path))
    t = QTable.read(path)
    for name in TABLE1_COLUMNS:
        assert name in t.colnames
    assert t["dist"].unit == u.pc and t["nn_parallax"].unit == u.mas and t["ra"].unit == u.deg
    assert t["weighted_dist"][3].value == MAGIC_NUMBER and t["fakemag"][2] == MAGIC_NUMBER
    header = fits.getheader(path, 1)
    assert "ZP_CONV" in header
    with pytest.raises(FileExistsError):
        write_catalogue(_cat(), str(path))


def test_metrics():
    pred = np.array([1.1, 0.9, 1.0, MAGIC_NUMBER, 2.0])
    ref = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    r = fractional_residual(pred, ref)
    np.testing.assert_allclose(r[:3], [0.1, -0.1, 0.0])
    assert np.isnan(r[3]) and np.isnan(r[4])
    assert sigma_mad(r) == pytest.approx(1.4826 * 0.1)
    assert median_bias(r) == pytest.approx(0.0)
    acc = accuracy(pred * u.kpc, ref * 1000 * u.pc)
    assert acc["n"] == 3 and acc["sigma_mad"] == pytest.approx(1.4826 * 0.1)
