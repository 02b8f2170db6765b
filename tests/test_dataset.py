"""The dataset format: round trips with -9999/NaN, units, and every reader error."""
import json

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.table import MaskedColumn, QTable, Table

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.constants import MAGIC_NUMBER, PAPER_OFFSET_FEATURES
from astronn_gaiacal.conversions import extinction_correction
from astronn_gaiacal.io.dataset import (
    CANONICAL_UNITS,
    Dataset,
    DatasetError,
    MissingColumnError,
    canonical_unit,
    read_dataset,
    read_dataset_chunks,
    read_dataset_table,
    write_dataset,
)
from astronn_gaiacal.io.hdf5 import is_dataset_file
from astronn_gaiacal.io.tables import read_table, write_table

N, P = 7, 40


@pytest.fixture
def dataset(rng):
    spectra = rng.normal(1.0, 0.05, (N, P))
    spectra[2, 5] = np.nan
    columns = {
        "apogee_id": [f"2M{i:08d}+0000000" for i in range(N)],
        "source_id": np.array([11, 12, -9999, 14, 15, 16, 2**62], dtype=np.int64),
        "mag": [9.0, 10.0, MAGIC_NUMBER, 11.0, 12.0, np.nan, 8.5],
        "mag_ext": [0.1, MAGIC_NUMBER, 0.2, np.nan, 0.0, 0.1, -0.05],
        "parallax": [1.0, -0.2, MAGIC_NUMBER, np.nan, 0.3, 0.5, 2.0],
        "parallax_error": [0.05, 0.04, 0.03, 0.02, MAGIC_NUMBER, 0.01, 0.02],
        "phot_g_mean_mag": [12.0, 13.0, 14.0, np.nan, 15.0, 16.0, 11.5],
        "bp_rp": [1.2, 1.3, MAGIC_NUMBER, 1.5, 1.6, 1.7, 1.1],
        "teff": [4500.0, 4600.0, 4700.0, 4800.0, np.nan, 5000.0, 4300.0],
        "starflag": np.array([0, 1, 0, 0, 4, 0, 0]),
        "ra": np.linspace(0, 300, N),
    }
    return Dataset(spectra=spectra, spectra_err=np.full((N, P), 0.01), columns=columns,
                   attrs={"band": "Ks", "gaia_release": "dr2"})


def _model_input(ds):
    """The joint model's input row: spectrum | extinction-corrected mag | offset features."""
    return np.column_stack([ds["spectra"], ds.corrected_mag(), ds.feature_matrix(PAPER_OFFSET_FEATURES)])


def _assert_same(a, b):
    assert len(a) == len(b) and a.names == b.names
    for key in ("spectra", "spectra_err", *a.names):
        x, y = a[key], b[key]
        assert x.dtype.kind == y.dtype.kind, key
        np.testing.assert_array_equal(x, y, err_msg=key)  # NaN == NaN here
        assert a.unit(key) == b.unit(key) if key in a.names else True


@pytest.mark.parametrize("suffix", [".h5", ".fits", ".ecsv"])
def test_round_trip_keeps_missing_values_and_order(dataset, tmp_path, suffix):
    path = tmp_path / f"set{suffix}"
    write_dataset(path, dataset)
    back = read_dataset(path, require=("spectra", "mag", "parallax", "parallax_error"),
                        features=PAPER_OFFSET_FEATURES)
    _assert_same(dataset, back)
    assert back.attrs["band"] == "Ks" and back.attrs["gaia_release"] == "dr2"
    assert back["source_id"][-1] == 2**62 and back["source_id"].dtype == np.int64
    assert list(back["apogee_id"]) == list(dataset["apogee_id"])
    x, y = _model_input(dataset), _model_input(back)
    assert x.shape == (N, P + 1 + 3)
    np.testing.assert_array_equal(x, y)
    # -9999 and NaN are where they were: the magic K stays magic after correction, a magic AK is no correction
    corr = back.corrected_mag()
    assert corr[2] == MAGIC_NUMBER and np.isnan(corr[5]) and corr[1] == 10.0 and np.isnan(corr[3])
    np.testing.assert_array_equal(corr, extinction_correction(dataset["mag"], dataset["mag_ext"]))


def test_table_round_trip(dataset):
    table = dataset.to_table()
    assert isinstance(table, QTable) and table["spectra"].shape == (N, P)
    assert table["parallax"].unit == u.mas and table.meta["gaia_release"] == "dr2"
    _assert_same(dataset, read_dataset(table))


def test_hdf5_layout(dataset, tmp_path):
    path = tmp_path / "set.h5"
    dataset.write(path)
    with h5py.File(path, "r") as f:
        assert f["spectra"].dtype == np.float32 and f["spectra"].shape == (N, P)
        assert f["parallax"].attrs["unit"] == "mas" and "unit" not in f["starflag"].attrs
        assert f.attrs["band"] == "Ks" and f.attrs["format_version"] == 1
    with pytest.raises(FileExistsError):
        dataset.write(path)
    dataset.write(path, overwrite=True)


def test_foreign_hdf5_without_order_attribute(tmp_path):
    path = tmp_path / "paper.h5"
    with h5py.File(path, "w") as f:
        f["spectra"] = np.ones((3, 4))
        f["parallax"] = [1.0, 2.0, 3.0]
        f["mag"] = [9.0, 9.5, 10.0]
    ds = read_dataset(path, require=("spectra", "mag"))
    assert ds.names == ["mag", "parallax"] and ds.unit("parallax") == u.mas


def test_units_are_converted_and_magic_preserved():
    ds = Dataset(columns={"parallax": [500.0, MAGIC_NUMBER, np.nan], "ra": [1.0, 2.0, 3.0] * u.hourangle,
                          "teff": [4500, 4600, 4700]},
                 units={"parallax": "uas"})
    np.testing.assert_array_equal(ds["parallax"], [0.5, MAGIC_NUMBER, np.nan])
    np.testing.assert_allclose(ds["ra"], [15.0, 30.0, 45.0])
    assert ds.quantity("parallax").unit == u.mas and ds.quantity("teff").unit == u.K
    t = Table({"parallax": [0.001, MAGIC_NUMBER], "vscatter": [1000.0, 2000.0]})
    t["parallax"].unit = "arcsec"
    t["vscatter"].unit = "m / s"
    back = read_dataset(t)
    np.testing.assert_allclose(back["parallax"], [1.0, MAGIC_NUMBER])
    np.testing.assert_allclose(back["vscatter"], [1.0, 2.0])
    assert canonical_unit("true_parallax") == u.mas and canonical_unit("logg") is None
    assert all(u.Unit(v) is not None for v in CANONICAL_UNITS.values())


def test_masked_table_entries_become_missing():
    t = Table()
    t["mag"] = MaskedColumn([9.0, 10.0, 11.0], mask=[False, True, False], unit="mag")
    t["source_id"] = MaskedColumn(np.array([1, 2, 3], dtype=np.int64), mask=[True, False, False])
    t["apogee_id"] = MaskedColumn(["a", "b", "c"], mask=[False, False, True])
    ds = read_dataset(t)
    assert np.isnan(ds["mag"][1]) and ds["source_id"][0] == MAGIC_NUMBER and ds["apogee_id"][2] == ""


# ------------------------------------------------------------------ reader errors
def test_error_missing_column(dataset):
    with pytest.raises(MissingColumnError, match="required column 'snr' is missing"):
        read_dataset(dataset, require=("snr",))
    with pytest.raises(KeyError):
        read_dataset(dataset, features=("nu_eff_used_in_astrometry",))
    with pytest.raises(DatasetError, match="offset feature 'ecl_lat'"):
        read_dataset(dataset, features=("ecl_lat",))
    no_spec = Dataset(columns={"mag": [1.0]})
    with pytest.raises(MissingColumnError, match="'spectra' is missing"):
        read_dataset(no_spec, require=("spectra",))
    with pytest.raises(MissingColumnError, match="no column 'bogus'"):
        dataset["bogus"]


def test_error_all_missing(dataset):
    bad = dataset.with_columns(teff=np.full(N, np.nan), bp_rp=np.full(N, MAGIC_NUMBER))
    read_dataset(bad)  # not required: kept
    with pytest.raises(DatasetError, match="offset feature 'teff' has no valid value"):
        read_dataset(bad, features=("teff",))
    with pytest.raises(DatasetError, match="'bp_rp' has no valid value"):
        read_dataset(bad, require=("bp_rp",))
    nan_spec = bad.with_columns(spectra=np.full((N, P), np.nan), spectra_err=None)
    with pytest.raises(DatasetError, match="'spectra' has no valid value"):
        read_dataset(nan_spec, require=("spectra",))
    ids = Dataset(columns={"apogee_id": ["", ""]})
    with pytest.raises(DatasetError, match="'apogee_id' has no valid value"):
        read_dataset(ids, require=("apogee_id",))


def test_error_shapes():
    with pytest.raises(DatasetError, match="'spectra_err' has shape"):
        Dataset(spectra=np.ones((3, 4)), spectra_err=np.ones((3, 5)))
    with pytest.raises(DatasetError, match="column 'mag' has 2 values but the dataset has 3 stars"):
        Dataset(spectra=np.ones((3, 4)), columns={"mag": [1.0, 2.0]})
    with pytest.raises(DatasetError, match="'spectra' must be 2-D"):
        Dataset(spectra=np.ones(4))
    with pytest.raises(DatasetError, match="column 'mag' must be 1-D"):
        Dataset(columns={"mag": np.ones((2, 2))})
    with pytest.raises(DatasetError, match="without 'spectra'"):
        Dataset(spectra_err=np.ones((2, 2)))
    with pytest.raises(DatasetError, match="needs spectra or at least one column"):
        Dataset()
    with pytest.raises(DatasetError, match="'spectra' must be a numeric"):
        Dataset(spectra=np.array([["a", "b"]]))


def test_error_units():
    with pytest.raises(DatasetError, match="column 'parallax' has unit 'pc'"):
        Dataset(columns={"parallax": [1.0]}, units={"parallax": "pc"})
    t = Table({"teff": [4500.0]})
    t["teff"].unit = "mag"
    with pytest.raises(DatasetError, match="column 'teff'.*canonical unit 'K'"):
        read_dataset(t)
    with pytest.raises(DatasetError, match="unknown unit"):
        Dataset(columns={"mag": [1.0]}, units={"mag": "furlongs per bogus"})
    with pytest.raises(DatasetError, match="holds strings but has unit"):
        Dataset(columns={"apogee_id": ["a"]}, units={"apogee_id": "deg"})
    with pytest.raises(DatasetError, match="units given for 'snr'"):
        Dataset(columns={"mag": [1.0]}, units={"snr": ""})
    with pytest.raises(DatasetError, match="Quantity in 'mas' but units gives 'deg'"):
        Dataset(columns={"parallax": [1.0] * u.mas}, units={"parallax": "deg"})


def test_error_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "nope.h5")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"not hdf5" * 10)
    with pytest.raises(DatasetError, match="cannot read .* as HDF5"):
        read_dataset(bad)
    bad_fits = tmp_path / "corrupt.fits"
    bad_fits.write_bytes(b"not fits" * 10)
    with pytest.raises(DatasetError, match="cannot read .* as a table"):
        read_dataset(bad_fits)
    two_d = tmp_path / "twod.h5"
    with h5py.File(two_d, "w") as f:
        f["mag"] = np.ones((3, 2))
    with pytest.raises(DatasetError, match="column 'mag' .* must be 1-D"):
        read_dataset(two_d)
    group = tmp_path / "group.h5"
    with h5py.File(group, "w") as f:
        f.create_group("gaia")
    with pytest.raises(DatasetError, match="'gaia' .* is a group"):
        read_dataset(group)
    with pytest.raises(TypeError, match="source must be"):
        read_dataset(42)
    with pytest.raises(TypeError, match="not a single string"):
        read_dataset(Dataset(columns={"mag": [1.0]}), require="mag")


def test_attrs_validated():
    with pytest.raises(DatasetError, match="reserved"):
        Dataset(columns={"mag": [1.0]}, attrs={"format_version": 3})
    with pytest.raises(DatasetError, match="attribute 'bad' must be a string, a number"):
        Dataset(columns={"mag": [1.0]}, attrs={"bad": object()})
    with pytest.raises(DatasetError, match="attribute 'bad' is not JSON-serialisable"):
        Dataset(columns={"mag": [1.0]}, attrs={"bad": {"a": object()}})


def test_structured_attrs_round_trip(tmp_path):
    report = {"sample": "train", "removed": {"snr": 3, "starflag": 1}, "n_selected": 6}
    ds = Dataset(columns={"mag": [1.0]}, attrs={"selection": report, "cuts": ["snr", "starflag"], "note": "[x"})
    ds.write(tmp_path / "a.h5")
    back = read_dataset(tmp_path / "a.h5")
    assert back.attrs == {"selection": report, "cuts": ["snr", "starflag"], "note": "[x"}
    ds.write(tmp_path / "a.ecsv")
    assert read_dataset(tmp_path / "a.ecsv").attrs == back.attrs
    ds.write(tmp_path / "a.fits")  # structured values as JSON text in the header
    assert json.loads(read_dataset(tmp_path / "a.fits").attrs["selection"]) == report
    with pytest.warns(UserWarning, match="do not keep the dataset attributes"):
        ds.write(tmp_path / "a.vot")


@pytest.mark.parametrize("suffix", [".h5", ".fits"])
def test_read_in_chunks(dataset, tmp_path, suffix):
    path = tmp_path / f"set{suffix}"
    dataset.write(path)
    chunks = list(read_dataset_chunks(path, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    for start, chunk in zip((0, 3, 6), chunks):
        part = dataset.subset(np.arange(start, min(start + 3, N)))
        np.testing.assert_array_equal(chunk["spectra"], part["spectra"])
        assert chunk.names == dataset.names and chunk.attrs == dataset.attrs
        for name in dataset.names:
            np.testing.assert_array_equal(chunk[name], part[name], err_msg=name)
            assert chunk.unit(name) == part.unit(name)
    with pytest.raises(ValueError, match="chunk_rows"):
        next(read_dataset_chunks(path, 0))


def test_dataset_file_as_table(dataset, tmp_path):
    path = tmp_path / "set.h5"
    dataset.write(path)
    assert is_dataset_file(path) and not is_dataset_file(tmp_path / "nope.h5")
    table = read_dataset_table(path)
    assert table.colnames == dataset.names and table.meta == dataset.attrs
    assert table["parallax"].unit == u.mas and list(table["apogee_id"]) == list(dataset["apogee_id"])
    np.testing.assert_array_equal(table["mag"], dataset["mag"])
    # a generic HDF5 table (no dataset format) and other formats go to the table reader
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["mag"] = [9.0, 9.5]
    assert not is_dataset_file(plain)
    np.testing.assert_array_equal(read_dataset_table(plain)["mag"], read_table(plain)["mag"])
    dataset.write(tmp_path / "set.ecsv")
    assert read_dataset_table(tmp_path / "set.ecsv").colnames == ["spectra", "spectra_err", *dataset.names]


def test_ids_read_from_a_dataset_file_write_to_fits_and_votable(dataset, tmp_path):
    """HDF5 text columns come back as Python strings; the table writers still give fixed-width text."""
    path = tmp_path / "set.h5"
    dataset.write(path)
    table = read_table(path)
    for ext in ("fits", "vot"):
        out = write_table(table, tmp_path / f"out.{ext}")
        assert list(read_table(out)["apogee_id"]) == list(dataset["apogee_id"])
    assert table["apogee_id"].dtype == object  # the caller's table is left as it was


# ------------------------------------------------------------ dataset methods
def test_subset_with_columns_and_read_only(dataset):
    sub = dataset.subset(dataset["starflag"] == 0)
    assert len(sub) == 5 and list(sub["source_id"][:2]) == [11, -9999]
    np.testing.assert_array_equal(sub["spectra"], dataset["spectra"][dataset["starflag"] == 0])
    rev = dataset.subset([6, 0])
    assert list(rev["apogee_id"]) == [dataset["apogee_id"][6], dataset["apogee_id"][0]]
    with pytest.raises(DatasetError, match="boolean index has shape"):
        dataset.subset(np.ones(3, bool))
    with pytest.raises(DatasetError, match="out of range"):
        dataset.subset([7])
    new = dataset.with_columns(snr=np.arange(N) * 50.0, parallax=np.arange(N) * 1000.0, units={"parallax": "uas"})
    assert new.names[-1] == "snr" and new["parallax"][3] == 3.0 and "snr" not in dataset
    with pytest.raises(ValueError, match="read-only"):
        dataset["mag"][0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        dataset["spectra"][0, 0] = 1.0
    with pytest.raises(TypeError, match="not numeric"):
        dataset.quantity("apogee_id")
    assert "spectra" in dataset and "spectra_err" in dataset and "mag" in dataset
    assert "N=7" in repr(dataset)
