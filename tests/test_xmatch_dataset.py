"""Assembling the training dataset format from an APOGEE-like table and its Gaia cross-match."""
import types

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

import astronn_gaiacal  # noqa: F401  (compatibility layer first)
from astronn_gaiacal.sources.apogee_columns import APOGEE_FIELDS, FITS_KEYWORD_LENGTH, header_keywords, table_columns
from astronn_gaiacal.sources.xmatch import APOGEE_COLUMNS
from astronn_gaiacal.sources.xmatch import apogee as xmatch_apogee
from astronn_gaiacal.sources.xmatch import crossmatch_local, dataset_columns, to_dataset
from gaia_fake import arcsec_offset, make_sky


@pytest.fixture
def apogee(rng):
    n = 6
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-50, 50, n)
    gra, gdec = arcsec_offset(ra, dec, np.where(np.arange(n) == 2, 3.0, 0.4), 0.0)  # star 2: no Gaia match
    sky = make_sky(gra, gdec, ks_m=np.linspace(9.0, 11.5, n))
    table = Table({"APOGEE_ID": [f"2M{i:08d}+0000000" for i in range(n)], "RA": ra, "DEC": dec,
                   "TEFF": rng.uniform(4000, 5200, n), "LOGG": rng.uniform(1, 3, n), "FE_H": rng.normal(0, 0.2, n),
                   "SNR": rng.uniform(50, 400, n), "K": rng.uniform(8, 12, n), "AK_TARG": rng.uniform(0, 0.3, n),
                   "STARFLAG": np.zeros(n, np.int64), "VSCATTER": rng.uniform(0, 0.5, n)})
    matched = crossmatch_local(table, sky, release="dr3", with_2mass=True)
    return table, matched, sky


def test_dataset_columns_use_the_missing_value_conventions(apogee):
    _, matched, _ = apogee
    values, units = dataset_columns(matched)
    assert np.isnan(values["parallax"][2]) and values["source_id"][2] == -9999
    assert values["ph_qual"][2] == "" and values["ph_qual"][0] == "AAA"
    assert values["source_id"].dtype == np.int64 and values["visibility_periods_used"][2] == -9999
    np.testing.assert_array_equal(values["source_id"][[0, 1]], matched["source_id"][[0, 1]])
    assert units["parallax"] == "mas" and units["pmra"] == "mas / yr" and "source_id" not in units


@pytest.fixture
def stub_dataset(monkeypatch):
    """A recording stand-in with the contract's constructor (docs: /work/wt/notes/DATASET_CONTRACT.md)."""
    module = types.ModuleType("astronn_gaiacal.io.dataset")

    class DatasetError(ValueError):
        pass

    class Dataset:
        def __init__(self, spectra=None, spectra_err=None, columns=None, units=None, attrs=None):
            self.spectra, self.spectra_err = spectra, spectra_err
            self.columns, self.units, self.attrs = columns, units, attrs

    module.Dataset, module.DatasetError = Dataset, DatasetError
    for name in ("Dataset", "DatasetError"):  # where to_dataset looks them up
        monkeypatch.setattr(xmatch_apogee, name, getattr(module, name))
    return module


def test_to_dataset_maps_apogee_and_gaia_columns(apogee, stub_dataset, rng):
    table, matched, sky = apogee
    spectra = rng.normal(1, 0.01, (len(table), 7))
    ds = to_dataset(table, matched, spectra=spectra, spectra_err=np.full_like(spectra, 0.01))
    cols = ds.columns
    np.testing.assert_array_equal(cols["mag"], table["K"])  # APOGEE's 2MASS K, not the archive's
    np.testing.assert_array_equal(cols["mag_ext"], table["AK_TARG"])
    for name, source in (("apogee_id", "APOGEE_ID"), ("teff", "TEFF"), ("logg", "LOGG"), ("fe_h", "FE_H"),
                         ("snr", "SNR"), ("starflag", "STARFLAG"), ("vscatter", "VSCATTER"), ("ra", "RA")):
        np.testing.assert_array_equal(cols[name], table[source])
    np.testing.assert_allclose(cols["gaia_ra"][[0, 1]], sky["ra"][[0, 1]])
    assert np.isnan(cols["parallax"][2]) and cols["source_id"][2] == -9999
    np.testing.assert_allclose(cols["parallax"][[0, 1]], sky["parallax"][[0, 1]])
    for name in ("nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat", "astrometric_params_solved", "ruwe"):
        assert name in cols
    assert ds.units["parallax"] == "mas" and ds.units["teff"] == "K" and ds.units["mag"] == "mag"
    assert ds.attrs == {"band": "Ks", "gaia_release": "dr3"} and ds.spectra is spectra


def test_to_dataset_location_id_and_gaia_positions(apogee, stub_dataset):
    table, matched, sky = apogee
    table = table.copy()
    table["LOCATION_ID"] = np.arange(4100, 4100 + len(table))  # DR14 allStar's field location id
    cols = to_dataset(table, matched).columns
    np.testing.assert_array_equal(cols["location_id"], table["LOCATION_ID"])
    # a table without its own position (matched by source_id): Gaia's is still gaia_ra/gaia_dec, never ra/dec
    table.remove_columns(["RA", "DEC"])
    cols = to_dataset(table, matched).columns
    assert "ra" not in cols and "dec" not in cols
    np.testing.assert_allclose(cols["gaia_ra"][[0, 1]], sky["ra"][[0, 1]])
    np.testing.assert_allclose(cols["gaia_dec"][[0, 1]], sky["dec"][[0, 1]])


def test_to_dataset_takes_ks_from_the_archive_when_the_table_has_none(apogee, stub_dataset):
    table, matched, sky = apogee
    table = table.copy()
    table.remove_column("K")
    ds = to_dataset(table, matched)
    np.testing.assert_allclose(ds.columns["mag"][[0, 1]], sky["ks_m"][[0, 1]], rtol=1e-6)
    assert np.isnan(ds.columns["mag"][2])
    no_tmass = crossmatch_local(table, sky, release="dr3")
    with pytest.raises(stub_dataset.DatasetError, match="mag: the table has no 2MASS K column"):
        to_dataset(table, no_tmass)
    with pytest.raises(stub_dataset.DatasetError, match="'KS_MAG' .* not in the table"):
        to_dataset(table, matched, columns={"mag": "KS_MAG"})
    with pytest.raises(stub_dataset.DatasetError, match="has 6 rows but table has 3"):
        to_dataset(table[:3], matched)


def test_to_dataset_with_the_real_dataset_module(apogee, tmp_path, rng):
    dataset = pytest.importorskip("astronn_gaiacal.io.dataset")
    table, matched, _ = apogee
    spectra = rng.normal(1, 0.01, (len(table), 7))
    ds = to_dataset(table, matched, spectra=spectra, spectra_err=np.full_like(spectra, 0.01))
    assert len(ds) == len(table) and "parallax" in ds and "mag" in ds
    assert ds.quantity("parallax").unit == u.mas
    path = tmp_path / "train.h5"
    dataset.write_dataset(path, ds)
    back = dataset.read_dataset(str(path))
    np.testing.assert_allclose(back["parallax"], ds["parallax"], equal_nan=True)
    np.testing.assert_array_equal(back["source_id"], ds["source_id"])
    np.testing.assert_allclose(back["spectra"], spectra)


def test_one_apogee_map_names_allstar_columns_and_header_keywords(apogee, stub_dataset):
    # allStar's AK_TARG is AKTARG in apStar headers: a FITS keyword has at most 8 characters
    assert APOGEE_FIELDS["mag_ext"].table == ("AK_TARG", "AKTARG") and APOGEE_FIELDS["mag_ext"].header == "AKTARG"
    assert header_keywords()["mag_ext"] == "AKTARG" and table_columns()["mag_ext"][0] == "AK_TARG"
    assert all(len(field.header) <= FITS_KEYWORD_LENGTH for field in APOGEE_FIELDS.values() if field.header)
    assert APOGEE_COLUMNS == table_columns()
    assert list(APOGEE_COLUMNS) == ["apogee_id", "location_id", "ra", "dec", "teff", "logg", "fe_h", "snr", "mag",
                                    "mag_ext", "starflag", "vscatter"]
    assert header_keywords("i") == {"starflag": "STARFLAG", "nvisits": "NVISITS"}
    # a table made from apStar headers (AKTARG) gives the same mag_ext as allStar's AK_TARG
    table, matched, _ = apogee
    headers = table.copy()
    headers.rename_column("AK_TARG", "AKTARG")
    np.testing.assert_array_equal(to_dataset(headers, matched).columns["mag_ext"], table["AK_TARG"])
