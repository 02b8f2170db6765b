"""The Table-1 catalogue: the paper's column names, hand-computed weighted distances, every fallback, FITS
with units."""
import os

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.io.catalogue import (
    CATALOGUE_COLUMNS,
    build_catalogue,
    catalogue_from_dataset,
    plot_catalogue,
    weighted_parallax,
    write_catalogue,
)
from astronn_gaiacal.constants import MAGIC_NUMBER as M
from astronn_gaiacal.io.dataset import Dataset
from astronn_gaiacal.pipeline import ZPESTIM_COMMENT
from astronn_gaiacal.zeropoint.estimates import ESTIMATES

# All stars have corrected K = 10, so parallax [mas] = fakemag / 100 and distance [pc] = 1e5 / fakemag.
# fakemag 500 +- 25 (total) +- 10 (model): NN parallax 5 +- 0.25 (total) +- 0.1 (model) mas, 200 +- 10 +- 4 pc.
# Zero-point -0.05 mas: corrected Gaia parallax = Gaia + 0.05.
STARS = {
    #        fakemag  total model   K     Gaia    Gaia err   expected weighted parallax, error (mas)
    # (weights: the NN's total error 0.25 mas -> 16 mas^-2; Gaia 0.1 -> 100, 0.2 -> 25)
    "both":  (500.0, 25.0, 10.0, 10.0, 5.15, 0.1, (16 * 5.0 + 100 * 5.2) / 116, 1 / np.sqrt(116.0)),
    "nn":    (500.0, 25.0, 10.0, 10.0, M, 0.1, 5.0, 0.25),
    "gaia":  (M, 25.0, 10.0, 10.0, 2.95, 0.2, 3.0, 0.2),
    "none":  (np.nan, 25.0, 10.0, 10.0, np.nan, 0.1, M, M),
    "neg":   (-50.0, 25.0, 10.0, 10.0, -0.15, 0.1, -0.1, 0.1),
    "noerr": (500.0, 25.0, 10.0, 10.0, 5.15, M, 5.0, 0.25),
    "nomag": (500.0, 25.0, 10.0, M, 2.95, 0.2, 3.0, 0.2),
    "nomod": (500.0, 25.0, np.nan, 10.0, 2.95, 0.2, (16 * 5.0 + 25 * 3.0) / 41, 1 / np.sqrt(41.0)),
    "unequal": (500.0, 25.0, 10.0, 10.0, 5.55, 0.2, (16 * 5.0 + 25 * 5.6) / 41, 1 / np.sqrt(41.0)),
}
NAMES = list(STARS)
ROWS = np.array([STARS[k] for k in NAMES])

#: The data model of the paper's catalogue (Leung & Bovy 2019, Table 1; the README of its repository,
#: henrysky/astroNN_gaia_dr2_paper): APOGEE's id, field and position, the NN columns, Gaia's own position.
PAPER_TABLE1 = ("apogee_id", "location_id", "ra_apogee", "dec_apogee", "fakemag", "fakemag_error", "dist",
                "dist_error", "dist_model_error", "nn_parallax", "nn_parallax_error", "nn_parallax_model_error",
                "weighted_parallax", "weighted_parallax_error", "ra", "dec")


@pytest.fixture
def cat():
    return build_catalogue(ROWS[:, 0], ROWS[:, 1], ROWS[:, 2], ROWS[:, 3] * u.mag,
                           parallax=ROWS[:, 4] * u.mas, parallax_error=ROWS[:, 5] * u.mas,
                           zeropoint=-50 * u.uas, apogee_id=NAMES, location_id=np.arange(4100, 4100 + len(NAMES)),
                           ra_apogee=np.arange(len(NAMES)) * u.deg, dec_apogee=np.full(len(NAMES), -30.0),
                           ra=np.arange(len(NAMES)) * u.deg + 1 * u.arcsec, dec=np.full(len(NAMES), -30.0) * u.deg,
                           gaia_columns={"phot_g_mean_mag": np.linspace(12, 16, len(NAMES)) * u.mag})


def _row(cat, name):
    return cat[NAMES.index(name)]


def test_columns_units_and_nn_values(cat):
    assert cat.colnames[:len(CATALOGUE_COLUMNS)] == list(CATALOGUE_COLUMNS)
    assert set(PAPER_TABLE1) <= set(CATALOGUE_COLUMNS)
    assert cat["location_id"].dtype.kind == "i" and list(cat["location_id"][:2]) == [4100, 4101]
    assert cat["ra_apogee"].unit == u.deg and cat["dec_apogee"].unit == u.deg and cat["dec"].unit == u.deg
    # APOGEE's position and Gaia's are kept apart, each under its own name
    np.testing.assert_allclose((cat["ra"] - cat["ra_apogee"]).to_value(u.arcsec), 1.0)
    assert cat.colnames[len(CATALOGUE_COLUMNS):] == ["parallax", "parallax_error", "phot_g_mean_mag"]
    both = _row(cat, "both")
    assert both["nn_parallax"].to_value(u.mas) == pytest.approx(5.0)
    assert both["nn_parallax_error"].to_value(u.mas) == pytest.approx(0.25)
    assert both["nn_parallax_model_error"].to_value(u.mas) == pytest.approx(0.1)
    assert both["dist"].to_value(u.pc) == pytest.approx(200.0)
    assert both["dist_error"].to_value(u.pc) == pytest.approx(10.0)
    assert both["dist_model_error"].to_value(u.pc) == pytest.approx(4.0)
    assert cat["ra"].unit == u.deg and cat["dist"].unit == u.pc and cat["nn_parallax"].unit == u.mas
    assert cat.meta["ZEROPT"][0] == pytest.approx(-0.05) and cat.meta["ZEROPTER"][0] == 0.0


def test_nn_values_against_astronn():
    from astroNN.gaia import fakemag_to_parallax, fakemag_to_pc

    rng = np.random.default_rng(3)
    fm, mag = rng.uniform(50, 5000, 20), rng.uniform(7, 13, 20)
    err = fm * 0.05
    c = build_catalogue(fm, err, err / 2, mag)
    plx, plx_err = fakemag_to_parallax(fm, mag, err)
    pc, pc_err = fakemag_to_pc(fm, mag, err)
    np.testing.assert_allclose(c["nn_parallax"].to_value(u.mas), plx.to_value(u.mas), rtol=1e-12)
    np.testing.assert_allclose(c["nn_parallax_error"].to_value(u.mas), plx_err.to_value(u.mas), rtol=1e-12)
    np.testing.assert_allclose(c["dist_error"].to_value(u.pc), pc_err.to_value(u.pc), rtol=1e-12)
    np.testing.assert_allclose(c["dist"].to_value(u.pc), pc.to_value(u.pc), rtol=1e-12)
    # no Gaia: the weighted columns are the NN parallax with its (total) error
    np.testing.assert_allclose(c["weighted_parallax"], c["nn_parallax"], rtol=1e-12)
    np.testing.assert_allclose(c["weighted_parallax_error"], c["nn_parallax_error"], rtol=1e-12)
    assert np.all(c["apogee_id"] == "") and np.all(c["ra"].value == M) and np.all(c["ra_apogee"].value == M)
    assert np.all(c["location_id"] == M)


@pytest.mark.parametrize("name", NAMES)
def test_weighted_hand_computed_and_fallbacks(cat, name):
    row = _row(cat, name)
    exp_plx, exp_err = STARS[name][6], STARS[name][7]
    assert row["weighted_parallax"].to_value(u.mas) == pytest.approx(exp_plx, rel=1e-12)
    assert row["weighted_parallax_error"].to_value(u.mas) == pytest.approx(exp_err, rel=1e-12)
    if exp_plx > 0:
        d = 1000.0 / exp_plx
        assert row["weighted_dist"].to_value(u.pc) == pytest.approx(d, rel=1e-12)
        assert row["weighted_dist_error"].to_value(u.pc) == pytest.approx(d * exp_err / exp_plx, rel=1e-12)
    else:  # both missing, or a non-positive weighted parallax: no distance
        assert row["weighted_dist"].value == M and row["weighted_dist_error"].value == M


def test_missing_nn_columns(cat):
    for name in ("gaia", "none", "neg", "nomag"):
        row = _row(cat, name)
        for col in ("nn_parallax", "nn_parallax_error", "nn_parallax_model_error", "dist", "dist_error",
                    "dist_model_error"):
            assert row[col].value == M, (name, col)
    nomod = _row(cat, "nomod")  # NN parallax and total error exist (they are weighted); no model error
    assert nomod["nn_parallax"].value == pytest.approx(5.0) and nomod["nn_parallax_error"].value == pytest.approx(0.25)
    assert nomod["nn_parallax_model_error"].value == M and nomod["dist_model_error"].value == M
    assert _row(cat, "none")["fakemag"] == M  # NaN written as -9999
    assert _row(cat, "neg")["fakemag"] == -50.0  # the model's output is kept as it is


def test_zeropoint_per_star_and_its_error():
    ones = np.ones(3)
    c = build_catalogue(500 * ones, 25 * ones, 10 * ones, 10 * ones, parallax=[5.15, 5.15, 5.15],
                        parallax_error=[0.1, 0.1, 0.1], zeropoint=[-0.05, np.nan, -0.05],
                        zeropoint_error=[0.0, 0.0, 0.1])
    assert "ZEROPT" not in c.meta
    np.testing.assert_array_equal(c["zeropoint"].value, [-0.05, M, -0.05])
    w = c["weighted_parallax"].value
    assert w[0] == pytest.approx((16 * 5.0 + 100 * 5.2) / 116)  # NN total error 0.25 mas, Gaia 0.1 mas
    assert w[1] == pytest.approx(5.0)  # unknown zero-point: NN alone
    s2 = 0.1**2 + 0.1**2  # Gaia and zero-point errors in quadrature
    assert w[2] == pytest.approx((5.0 / 0.0625 + 5.2 / s2) / (1 / 0.0625 + 1 / s2))
    assert c["weighted_parallax_error"].value[2] == pytest.approx((1 / 0.0625 + 1 / s2) ** -0.5)


def test_no_zeropoint_means_no_correction():
    c = build_catalogue([500.0], [25.0], [10.0], [10.0], parallax=[5.2], parallax_error=[0.1])
    assert c["weighted_parallax"].value[0] == pytest.approx((16 * 5.0 + 100 * 5.2) / 116)
    assert "ZEROPT" not in c.meta and "zeropoint" not in c.colnames
    with pytest.raises(ValueError, match="zeropoint_error given without zeropoint"):
        build_catalogue([500.0], [25.0], [10.0], [10.0], zeropoint_error=0.1)


def test_weighted_parallax_function():
    p, e = weighted_parallax([1.0, 1.0, M, 1.0] * u.mas, [0.1, 0.1, 0.1, 0.0] * u.mas,
                             [1000.0, M, np.nan, 2000.0] * u.uas, [100.0, 100.0, 100.0, 200.0] * u.uas)
    np.testing.assert_allclose(p.to_value(u.mas), [1.0, 1.0, M, 2.0])
    np.testing.assert_allclose(e.to_value(u.mas), [0.1 / np.sqrt(2), 0.1, M, 0.2])


def test_fits_file(cat, tmp_path):
    path = tmp_path / "cat.fits"
    write_catalogue(cat, path)
    back = QTable.read(path)
    assert back.colnames == cat.colnames
    for name in ("nn_parallax", "weighted_parallax", "parallax"):
        assert back[name].unit == u.mas
    for name in ("dist", "dist_error", "weighted_dist", "weighted_dist_error"):
        assert back[name].unit == u.pc
    assert back["ra"].unit == u.deg and back["phot_g_mean_mag"].unit == u.mag
    for name in back.colnames[1:]:
        assert np.all(np.isfinite(back[name].value)), name
    np.testing.assert_allclose(back["weighted_dist"].value, cat["weighted_dist"].value, rtol=1e-15)
    assert list(back["apogee_id"]) == NAMES
    assert back["fakemag"][NAMES.index("none")] == M
    hdr = fits.getheader(path, 1)
    assert hdr["ZEROPT"] == pytest.approx(-0.05) and hdr["MISSING"] == M
    # an independent read of the FITS header: the paper's names, their units, an integer location_id
    ttype = {hdr[f"TTYPE{i}"]: i for i in range(1, hdr["TFIELDS"] + 1)}
    assert list(ttype)[:len(CATALOGUE_COLUMNS)] == list(CATALOGUE_COLUMNS)
    for name, unit in (("ra_apogee", "deg"), ("dec_apogee", "deg"), ("ra", "deg"), ("dec", "deg"), ("dist", "pc"),
                       ("nn_parallax", "mas"), ("weighted_dist_error", "pc")):
        assert hdr[f"TUNIT{ttype[name]}"] == unit, name
    assert hdr[f"TFORM{ttype['location_id']}"] == "J" and f"TUNIT{ttype['location_id']}" not in hdr
    raw = fits.getdata(path, 1)
    np.testing.assert_allclose(raw["ra"] - raw["ra_apogee"], 1 / 3600, rtol=1e-9)
    assert list(raw["location_id"]) == list(range(4100, 4100 + len(NAMES)))
    with pytest.raises(FileExistsError):
        write_catalogue(cat, path)
    png = tmp_path / "cat.png"
    plot_catalogue(cat, str(png))
    assert png.stat().st_size > 10000


@pytest.mark.parametrize("name", (*ESTIMATES, "trend_refit", "network"))
def test_zeropoint_estimate_card_is_not_truncated(cat, tmp_path, name):
    """The header names the estimate behind ZEROPT; the longest name and its comment fit on one FITS card."""
    import warnings

    cat = cat.copy()
    cat.meta["ZPESTIM"] = (name, ZPESTIM_COMMENT)
    path = tmp_path / "cat.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error", fits.verify.VerifyWarning)
        write_catalogue(cat, path)
    card = fits.getheader(path, 1).cards["ZPESTIM"]
    assert (card.value, card.comment) == (name, ZPESTIM_COMMENT)


def test_write_is_atomic(cat, tmp_path):
    path = tmp_path / "cat.fits"
    write_catalogue(cat, path)
    before = path.read_bytes()
    bad = cat.copy()
    bad["oops"] = [object()] * len(bad)  # FITS cannot hold this column
    with pytest.raises(Exception):
        write_catalogue(bad, path, overwrite=True)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["cat.fits"]
    with pytest.raises(KeyError, match="weighted_dist"):
        write_catalogue(cat[["apogee_id", "ra"]], tmp_path / "x.fits")


def test_from_dataset():
    ds = Dataset(columns={
        "apogee_id": ["a", "b"], "location_id": np.array([4102, -9999]), "ra": [10.0, 20.0], "dec": [1.0, 2.0],
        "gaia_ra": [10.0001, np.nan], "gaia_dec": [1.0001, np.nan], "mag": [10.2, 10.0], "mag_ext": [0.2, -9999.0],
        "parallax": [5150.0, M], "parallax_error": [100.0, 100.0], "phot_g_mean_mag": [12.0, 13.0],
        "source_id": np.array([7, 8]), "teff": [4500.0, 4600.0]},
        units={"parallax": "uas", "parallax_error": "uas", "gaia_ra": "deg", "gaia_dec": "deg"})
    c = catalogue_from_dataset(ds, [500.0, 500.0], [25.0, 25.0], [10.0, 10.0], zeropoint=-0.05)
    np.testing.assert_allclose(c["weighted_parallax"].value, [(16 * 5.0 + 100 * 5.2) / 116, 5.0])
    assert list(c["source_id"]) == [7, 8] and "teff" not in c.colnames
    assert c["parallax"].unit == u.mas and c["parallax"].value[0] == pytest.approx(5.15)
    assert list(c["apogee_id"]) == ["a", "b"] and list(c["location_id"]) == [4102, M]
    # the dataset's ra/dec (APOGEE's) are ra_apogee/dec_apogee; its gaia_ra/gaia_dec are the catalogue's ra/dec
    assert list(c["ra_apogee"].value) == [10.0, 20.0] and list(c["dec_apogee"].value) == [1.0, 2.0]
    assert list(c["ra"].value) == [10.0001, M] and list(c["dec"].value) == [1.0001, M]
    assert "gaia_ra" not in c.colnames
    # no Gaia position in the dataset (a mock survey's): Gaia's ra/dec are -9999, never APOGEE's copied over
    apogee_only = Dataset(columns={"ra": [10.0, 20.0], "dec": [1.0, 2.0], "mag": [10.2, 10.0]})
    c = catalogue_from_dataset(apogee_only, [500.0, 500.0], [25.0, 25.0], [10.0, 10.0])
    assert list(c["ra_apogee"].value) == [10.0, 20.0] and np.all(c["ra"].value == M) and np.all(c["dec"].value == M)


def test_errors():
    with pytest.raises(ValueError, match="fakemag_error has 1 values; expected 2"):
        build_catalogue([1.0, 2.0], [1.0], [1.0, 1.0], [10.0, 10.0])
    with pytest.raises(u.UnitTypeError, match="parallax must be a parallax-like"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], parallax=[1.0] * u.pc, parallax_error=[1.0] * u.mas)
    with pytest.raises(ValueError, match="without parallax_error"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], parallax=[1.0])
    with pytest.raises(ValueError, match="'dist', which is already a catalogue column"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], gaia_columns={"dist": [3.0]})
    with pytest.raises(u.UnitTypeError, match="ra must be an angle"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], ra=[1.0] * u.pc)
    with pytest.raises(u.UnitTypeError, match="ra_apogee must be an angle"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], ra_apogee=[1.0] * u.pc)
    with pytest.raises(ValueError, match="location_id must hold whole numbers"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], location_id=[4102.5])
    with pytest.raises(TypeError, match="location_id must hold integers"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], location_id=["4102"])
    with pytest.raises(ValueError, match="zeropoint has 2 values; expected 1"):
        build_catalogue([1.0], [1.0], [1.0], [10.0], parallax=[1.0], parallax_error=[0.1], zeropoint=[0.0, 0.0])
