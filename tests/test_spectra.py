"""apStar reading and continuum normalisation on a real DR17 file."""
import os
import shutil

import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.constants import APOGEE_PIXMASK_BITS
from astronn_gaiacal.spectra import ApStarError, read_apstar, read_apstar_files, read_apstar_raw

REAL = "apStar-dr17-2M19485057+5005279.fits"


def test_real_apstar(data_path):
    star = read_apstar(data_path(REAL))
    spec = star["spectrum"]
    assert spec.shape == (7514,) and np.all(np.isfinite(spec))
    assert star["k"] == pytest.approx(10.522, abs=5e-4)
    assert star["aktarg"] == pytest.approx(0.0321, abs=5e-5)
    assert star["apogee_id"] == "2M19485057+5005279" and star["dr"] == 17

    from astroNN.apogee import apogee_continuum
    from astroNN.apogee.chips import bitmask_boolean, gap_delete

    flux, err, mask, _ = read_apstar_raw(data_path(REAL))
    direct, _ = apogee_continuum(flux[None], err[None], dr=17, bitmask=mask[None], target_bit=list(APOGEE_PIXMASK_BITS))
    np.testing.assert_array_equal(spec, direct[0].astype(np.float32))
    masked = bitmask_boolean(gap_delete(mask[None], dr=17), list(APOGEE_PIXMASK_BITS))[0]
    assert masked.any() and np.all(spec[masked] == 1.0)
    cont = np.load(os.path.join(__import__("astroNN.data", fromlist=["datapath"]).datapath(), "dr17_contmask.npy"))
    cont = gap_delete(cont[None].astype(float), dr=17)[0].astype(bool) & ~masked
    assert abs(np.median(spec[cont]) - 1.0) < 0.01


def test_batch_reports_bad_files_and_keeps_order(data_path, tmp_path):
    folder = tmp_path / "apstar"
    folder.mkdir()
    shutil.copy(data_path(REAL), folder / "b.fits")
    shutil.copy(data_path("apStar-dr17-2M17335483-2753043.fits"), folder / "a.fits")
    (folder / "c.fits").write_bytes(b"SIMPLE  = not really a fits file")
    ds, report = read_apstar_files([str(folder), str(tmp_path / "missing.fits")], dr=17, progress=False)
    assert report["read"] == 2 and len(report["failed"]) == 2
    assert any("missing.fits" in k for k in report["failed"]) and any("c.fits" in k for k in report["failed"])
    assert list(ds["apogee_id"]) == ["2M17335483-2753043", "2M19485057+5005279"]
    assert ds["spectra"].shape == (2, 7514)
    np.testing.assert_allclose(ds["mag"], [9.811, 10.522], atol=5e-4)
    np.testing.assert_allclose(ds["mag_ext"], [0.4688, 0.0321], atol=5e-5)


def test_not_an_apstar(tmp_path):
    with pytest.raises(ApStarError, match="no such file"):
        read_apstar(tmp_path / "nope.fits")
    from astropy.io import fits

    bad = tmp_path / "short.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((1, 100)))]).writeto(bad)
    with pytest.raises(ApStarError, match="HDUs"):
        read_apstar(bad)


def test_cli_spectra(data_path, tmp_path):
    from astronn_gaiacal.cli import main
    from astronn_gaiacal.dataset import read_dataset

    out = tmp_path / "data.h5"
    assert main(["spectra", data_path(REAL), str(tmp_path / "nope.fits"), "--out", str(out)]) == 0
    ds = read_dataset(str(out), require=["spectra", "mag", "mag_ext", "apogee_id", "ra", "dec"])
    assert len(ds) == 1 and ds["spectra"].shape == (1, 7514) and "spectra_err" in ds
    assert main(["spectra", str(tmp_path / "nope.fits"), "--out", str(tmp_path / "x.h5")]) == 2
    assert not (tmp_path / "x.h5").exists()
