"""The HDF5 dataset format: round trips, validation, tables."""
import os

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable, Table

from astronn_gaiacal.constants import MAGIC_NUMBER
from astronn_gaiacal.dataset import Dataset, DatasetError, read_dataset


@pytest.fixture
def ds(rng):
    n = 7
    plx = rng.normal(1, 0.5, n)
    plx[2] = MAGIC_NUMBER
    plx[4] = np.nan
    g = rng.uniform(11, 16, n)
    g[5] = np.nan
    return Dataset(
        spectra=rng.normal(1, 0.01, (n, 12)),
        spectra_err=np.full((n, 12), 0.01),
        columns={
            "mag": rng.uniform(8, 12, n), "mag_ext": np.r_[rng.uniform(0, 0.3, n - 1), MAGIC_NUMBER],
            "parallax": plx, "parallax_error": np.full(n, 0.05), "phot_g_mean_mag": g,
            "apogee_id": np.array([f"2M{i:08d}" for i in range(n)]),
        },
        units={"mag": "mag", "mag_ext": "mag", "parallax": "mas", "parallax_error": "mas", "phot_g_mean_mag": "mag"},
        attrs={"band": "Ks", "gaia_release": "dr2", "note": {"injected": -52.3}},
    )


def test_roundtrip_keeps_every_star_in_order(ds, tmp_path):
    path = str(tmp_path / "d.h5")
    ds.write(path)
    back = read_dataset(path, require=["spectra", "mag", "parallax", "parallax_error"], features=["phot_g_mean_mag"])
    assert len(back) == len(ds) and back.names == ds.names
    np.testing.assert_array_equal(back["spectra"], ds["spectra"])
    for name in ds.names:
        a, b = ds[name], back[name]
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_array_equal(a[~np.isnan(a)], b[~np.isnan(b)])
        else:
            assert list(a) == list(b)
    assert back["parallax"][2] == MAGIC_NUMBER and np.isnan(back["parallax"][4])
    assert back.attrs["band"] == "Ks" and back.attrs["note"] == {"injected": -52.3}
    assert back.quantity("parallax").unit == u.mas
    # into the model input: extinction correction keeps -9999 extinction as no correction
    corr = back.corrected_mag()
    assert corr[-1] == back["mag"][-1] and np.allclose(corr[:-1], back["mag"][:-1] - back["mag_ext"][:-1])


def test_units_converted_and_checked(tmp_path):
    t = QTable({"spectra": np.ones((3, 4)), "mag": [9.0, 10.0, 11.0] * u.mag,
                "parallax": [0.001, 0.002, MAGIC_NUMBER] * u.arcsec, "parallax_error": [50, 50, 50] * u.uas})
    ds = read_dataset(t, require=["parallax"])
    np.testing.assert_allclose(ds["parallax"][:2], [1.0, 2.0])
    assert ds["parallax"][2] == MAGIC_NUMBER and np.allclose(ds["parallax_error"], 0.05)
    t["parallax"] = [100, 200, 300] * u.pc
    with pytest.raises(DatasetError, match="'parallax' has unit 'pc'"):
        read_dataset(t)


def test_reader_errors(ds, tmp_path):
    path = str(tmp_path / "d.h5")
    ds.write(path)
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['teff'\]"):
        read_dataset(path, features=["teff"])
    allnan = ds.with_columns(parallax=np.full(len(ds), np.nan))
    with pytest.raises(DatasetError, match="'parallax' has no valid value"):
        read_dataset(allnan, require=["parallax"])
    with pytest.raises(DatasetError, match="'mag' has 3 rows"):
        Dataset(spectra=np.ones((4, 2)), columns={"mag": [1.0, 2.0, 3.0]})
    with pytest.raises(DatasetError, match="spectra_err has shape"):
        Dataset(spectra=np.ones((4, 2)), spectra_err=np.ones((4, 3)))
    with pytest.raises(FileNotFoundError):
        read_dataset(str(tmp_path / "none.h5"))
    with pytest.raises(FileExistsError):
        ds.write(path)


def test_fits_table_accepted(ds, tmp_path):
    t = Table(ds.to_table())
    path = str(tmp_path / "d.fits")
    t.write(path)
    back = read_dataset(path, require=["spectra", "parallax"])
    assert back["spectra"].shape == ds["spectra"].shape and len(back) == len(ds)
    np.testing.assert_allclose(back["mag"], ds["mag"])


def test_subset_and_with_columns(ds):
    sub = ds.subset(np.array([True, False, True, False, False, False, True]))
    assert len(sub) == 3 and list(sub["apogee_id"]) == ["2M00000000", "2M00000002", "2M00000006"]
    more = ds.with_columns(zeropoint=np.full(len(ds), -0.05) * u.mas)
    assert more.units["zeropoint"] == "mas" and "zeropoint" not in ds


def test_atomic_write_leaves_nothing_on_failure(ds, tmp_path, monkeypatch):
    import h5py

    path = tmp_path / "d.h5"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.File, "create_dataset", boom)
    with pytest.raises(RuntimeError):
        ds.write(str(path))
    assert os.listdir(tmp_path) == []
