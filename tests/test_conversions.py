"""Conversions against astroNN.gaia and physics, with -9999/NaN and Quantities."""
import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal  # noqa: F401
from astroNN import gaia as agaia
from astronn_gaiacal import conversions as conv
from astronn_gaiacal.constants import MAGIC_NUMBER

# the two apStar stars of shared/data/README.md: K, AKTARG, Gaia DR2 parallax +- error
K = np.array([10.522, 9.811])
AK = np.array([0.0321, 0.4688])
PLX = np.array([6.0670, 0.1428])
PLX_ERR = np.array([0.0255, 0.1827])


@pytest.fixture
def arrays(rng):
    n = 50
    mag = rng.uniform(6, 13, n)
    plx = rng.normal(1.0, 0.8, n)
    plx_err = rng.uniform(0.01, 0.2, n)
    mag[3] = MAGIC_NUMBER
    plx[7] = MAGIC_NUMBER
    return mag, plx, plx_err


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def test_real_stars_against_astronn():
    mag = conv.extinction_correction(K, AK)
    np.testing.assert_allclose(mag, agaia.extinction_correction(K, AK), rtol=1e-12)
    L, Lerr = conv.mag_to_fakemag(mag, PLX * u.mas, PLX_ERR * u.mas)
    aL, aLerr = agaia.mag_to_fakemag(mag, PLX * u.mas, PLX_ERR * u.mas)
    assert _rel(L, aL) < 1e-10 and _rel(Lerr, aLerr) < 1e-10
    # physics: the nearby dwarf has M_Ks ~ 4.4, i.e. log10 L ~ 2.9
    absmag = conv.fakemag_to_absmag(L)
    assert abs(absmag[0] - 4.4) < 0.1
    np.testing.assert_allclose(absmag, agaia.fakemag_to_absmag(L), rtol=1e-10)
    d = conv.fakemag_to_distance(L, mag)
    np.testing.assert_allclose(d.to_value(u.pc), 1000 / PLX, rtol=1e-12)


def test_arrays_with_magic_against_astronn(arrays):
    mag, plx, plx_err = arrays
    L, Lerr = conv.mag_to_fakemag(mag, plx, plx_err)
    aL, aLerr = agaia.mag_to_fakemag(mag, plx * u.mas, plx_err)
    assert _rel(L, aL) < 1e-10 and _rel(Lerr, aLerr) < 1e-10
    assert L[3] == MAGIC_NUMBER and L[7] == MAGIC_NUMBER

    pos = np.where(L > 0, L, MAGIC_NUMBER)  # positive luminosities only
    plx2, plx2_err = conv.fakemag_to_parallax(pos, mag, np.abs(Lerr))
    aplx2, aplx2_err = agaia.fakemag_to_parallax(pos, mag, np.abs(Lerr))
    assert plx2.unit == u.mas
    assert _rel(plx2.value, aplx2.value) < 1e-10 and _rel(plx2_err.value, aplx2_err.value) < 1e-10

    d, derr = conv.fakemag_to_distance(pos, mag, np.abs(Lerr))
    ad, aderr = agaia.fakemag_to_pc(pos, mag, np.abs(Lerr))
    assert _rel(d.value, ad.value) < 1e-10 and _rel(derr.value, aderr.value) < 1e-10

    M = conv.fakemag_to_absmag(pos)
    assert _rel(M, agaia.fakemag_to_absmag(pos)) < 1e-10
    assert _rel(conv.absmag_to_fakemag(M), agaia.absmag_to_fakemag(M)) < 1e-10
    dm = conv.absmag_to_distance(M, mag)
    assert _rel(dm.value, agaia.absmag_to_pc(M, mag).value) < 1e-10

    good = plx > 0
    Mp = conv.mag_to_absmag(mag[good], plx[good])
    assert _rel(Mp, agaia.mag_to_absmag(mag[good], plx[good])) < 1e-10


def test_quantities_in_and_out(arrays):
    mag, plx, plx_err = arrays
    L1 = conv.mag_to_fakemag(mag, plx)
    plx_as = (plx * u.mas).to(u.arcsec)
    L2 = conv.mag_to_fakemag(mag * u.mag, plx_as)
    good = (plx != MAGIC_NUMBER)
    assert _rel(L2[good], L1[good]) < 1e-10
    d = conv.parallax_to_distance(2.0 * u.mas, 0.1 * u.mas)
    assert d[0].unit == u.pc and np.isclose(d[0].value, 500.0) and np.isclose(d[1].value, 25.0)


def test_error_propagation_numerically(rng):
    L0, m0, sL = 120.0, 10.3, 3.0
    d, derr = conv.fakemag_to_distance(L0, m0, sL)
    draws = conv.fakemag_to_distance(rng.normal(L0, sL * 1e-3, 200000), m0).value
    assert np.isclose(np.std(draws) * 1e3, derr.value, rtol=0.02)
    M, Merr = conv.mag_to_absmag(10.0, 2.0, 0.02)
    assert np.isclose(Merr, 5 / np.log(10) * 0.01)  # astroNN's formula divides by M instead
    Lx, Lxerr = conv.absmag_to_fakemag(M, Merr)
    assert np.isclose(Lxerr / Lx, 0.01, rtol=1e-10)


def test_nan_preserved_and_magic_preserved():
    L = conv.mag_to_fakemag([10.0, np.nan, MAGIC_NUMBER], [1.0, 1.0, 1.0])
    assert L[0] == 1.0 * 10**2 and np.isnan(L[1]) and L[2] == MAGIC_NUMBER
    d = conv.fakemag_to_distance([100.0, MAGIC_NUMBER, np.nan], 10.0)
    assert d.unit == u.pc and d[1].value == MAGIC_NUMBER and np.isnan(d[2].value)


def test_extinction_below_minus_one_means_none():
    np.testing.assert_allclose(conv.extinction_correction([10.0, 10.0, 10.0], [0.2, -9999.0, -2.0]), [9.8, 10.0, 10.0])
    assert conv.extinction_correction(MAGIC_NUMBER, 0.1) == MAGIC_NUMBER


def test_negative_parallax_gives_negative_fakemag():
    assert conv.mag_to_fakemag(10.0, -0.5) == -50.0


def test_fakemag_to_mag_inverts_distance():
    m = conv.fakemag_to_mag(300.0, conv.fakemag_to_distance(300.0, 11.2))
    assert np.isclose(m, 11.2, rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="do not broadcast"):
        conv.mag_to_fakemag(np.ones(3), np.ones(4))
    with pytest.raises(u.UnitTypeError, match="parallax must be a Quantity in units of mas"):
        conv.mag_to_fakemag(10.0, 200 * u.pc)
    with pytest.raises(TypeError):  # UnitTypeError is a TypeError
        conv.fakemag_to_mag(10.0, 2 * u.mas)
    with pytest.raises(ValueError, match="fakemag must be positive"):
        conv.fakemag_to_distance([100.0, -5.0], 10.0)
    with pytest.raises(ValueError, match="fakemag must be positive"):
        conv.fakemag_to_parallax(0.0, 10.0)
