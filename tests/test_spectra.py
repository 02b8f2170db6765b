"""apStar reading and continuum normalisation against astroNN, on two real DR17 apStar files."""
import json
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

import astronn_gaiacal  # noqa: F401
from astroNN.apogee.chips import apogee_continuum, gap_delete
from astronn_gaiacal.cli import main
from astronn_gaiacal.constants import APOGEE_PIXMASK_BITS, APOGEE_SPECTRUM_LENGTH, MAGIC_NUMBER
from astronn_gaiacal.io.dataset import read_dataset
from astronn_gaiacal.sources.apogee_columns import header_keywords
from astronn_gaiacal.sources.spectra import (
    APSTAR_ROWS,
    apstar_dr,
    continuum_normalise,
    find_apstar_files,
    load_apstar,
    load_apstar_batch,
    plot_spectra,
    read_apstar,
)

DWARF = "apStar-dr17-2M19485057+5005279.fits"  # single visit
GIANT = "apStar-dr17-2M17335483-2753043.fits"  # three visits


def _contmask(dr):
    import astroNN.data

    return np.load(os.path.join(astroNN.data.datapath(), f"dr{dr}_contmask.npy"))


def test_real_apstar_acceptance(data_path):
    path = data_path(DWARF)
    star = load_apstar(path)
    spec, err = star.spectrum, star.spectrum_err
    assert star.dr == 17
    assert spec.shape == err.shape == (APOGEE_SPECTRUM_LENGTH,)
    assert np.all(np.isfinite(spec)) and np.all(np.isfinite(err))
    # continuum pixels are normalised to ~1
    assert abs(np.median(spec[_contmask(17)]) - 1.0) < 0.01
    # pixels with APOGEE_PIXMASK bits 0-7 or 12 are exactly 1 (flux and error)
    bitmask = gap_delete(fits.getdata(path, 3)[0], dr=17)[0]
    target = sum(1 << b for b in APOGEE_PIXMASK_BITS)
    masked = (bitmask & target) != 0
    assert masked.sum() == 245
    assert np.all(spec[masked] == 1.0) and np.all(err[masked] == 1.0)
    # other flagged pixels (e.g. bits 10, 11, 13) are not forced to 1
    other = (bitmask != 0) & ~masked
    assert other.sum() > 100 and np.mean(spec[other] == 1.0) < 0.01
    # identical to astroNN's apogee_continuum on the same arrays
    with fits.open(path) as hdul:
        ref, ref_err = apogee_continuum(hdul[1].data[0], hdul[2].data[0], dr=17, bitmask=hdul[3].data[0],
                                        target_bit=[0, 1, 2, 3, 4, 5, 6, 7, 12])
    np.testing.assert_array_equal(spec, ref[0])
    np.testing.assert_array_equal(err, ref_err[0])
    # header values
    assert star.mag == pytest.approx(10.522, abs=1e-6)
    assert star.mag_ext == pytest.approx(0.0321, abs=5e-5)
    assert star.apogee_id == "2M19485057+5005279"
    assert star.ra == pytest.approx(297.210723) and star.dec == pytest.approx(50.091099)
    assert star.nvisits == 1 and star.starflag == 0 and star.vscatter == 0.0
    assert star.snr == pytest.approx(137.49, abs=0.01)


def test_multivisit_rows_and_single_visit(data_path):
    path = data_path(GIANT)
    with fits.open(path) as hdul:  # the file's own rows, read independently
        nvisits = hdul[0].header["NVISITS"]
        flux, flux_err, bitmask = (np.asarray(hdul[i].data) for i in (1, 2, 3))
    assert nvisits == 3 and flux.shape == (nvisits + 2, 8575)
    assert np.nanmax(np.abs(flux[1] - flux[0])) > 1  # the two combinations differ: the choice matters
    # default: the globally weighted combination, row 1 (the paper's Appendix A and data reduction)
    raw = read_apstar(path)
    assert raw.row == 1 == APSTAR_ROWS["global"]
    np.testing.assert_array_equal(raw.flux, flux[1])
    np.testing.assert_array_equal(raw.flux_err, flux_err[1])
    np.testing.assert_array_equal(raw.bitmask, bitmask[1])
    for row, index in (("pixel", 0), (0, 0), (1, 1), (2, 2), (4, 4)):  # 2, 3, 4: the visits
        got = read_apstar(path, row=row)
        assert got.row == index
        np.testing.assert_array_equal(got.flux, flux[index])
    assert raw.meta["nvisits"] == 3
    assert raw.meta["mag"] == pytest.approx(9.811, abs=1e-6) and raw.meta["mag_ext"] == pytest.approx(0.4688, abs=5e-5)
    with pytest.raises(ValueError, match="row=7 is out of range"):
        read_apstar(path, row=7)
    with pytest.raises(ValueError, match="'global', 'pixel' or a row number"):
        read_apstar(path, row="combined")
    with pytest.raises(ValueError, match="row must be >= 0"):
        read_apstar(path, row=-1)
    with pytest.raises(TypeError, match="row number"):
        read_apstar(path, row=1.0)
    # load_apstar normalises the row it reads: astroNN's apogee_continuum on the file's row 1
    star = load_apstar(path)
    ref, _ = apogee_continuum(flux[1], flux_err[1], dr=17, bitmask=bitmask[1], target_bit=list(APOGEE_PIXMASK_BITS))
    np.testing.assert_array_equal(star.spectrum, ref[0])
    assert star.apstar_row == 1 and load_apstar(path, row="pixel").apstar_row == 0
    # a single-visit file has one combined spectrum, row 0; DR17 writes an all-zero row 1, never read
    with fits.open(data_path(DWARF)) as hdul:
        assert hdul[0].header["NVISITS"] == 1
        single_flux = np.asarray(hdul[1].data)
    assert single_flux.shape == (2, 8575) and np.all(single_flux[1] == 0) and np.nanmedian(single_flux[0]) > 100
    for row in ("global", "pixel", 1, 2):
        single = read_apstar(data_path(DWARF), row=row)
        assert single.row == 0
        np.testing.assert_array_equal(single.flux, single_flux[0])
    # another DR's continuum mask gives a (slightly) different normalisation
    s14 = load_apstar(path, dr=14).spectrum
    s17 = star.spectrum
    assert 0 < np.max(np.abs(s14 - s17)) < 0.2


def test_continuum_normalise_inputs(rng):
    flux = rng.normal(1000, 10, (2, 8575))
    err = np.full_like(flux, 10.0)
    spec, spec_err = continuum_normalise(flux, err, dr=14)
    assert spec.shape == (2, APOGEE_SPECTRUM_LENGTH)
    assert abs(np.median(spec) - 1) < 0.01
    one, _ = continuum_normalise(flux[1], err[1], dr=14)
    np.testing.assert_allclose(one, spec[1])
    with pytest.raises(ValueError, match="8575"):
        continuum_normalise(flux[:, :8000], err[:, :8000])
    with pytest.raises(ValueError, match="flux_err has shape"):
        continuum_normalise(flux, err[0])
    with pytest.raises(TypeError, match="bitmask must hold integers"):
        continuum_normalise(flux, err, bitmask=np.zeros(flux.shape))
    with pytest.raises(ValueError, match="use dr=14"):
        continuum_normalise(flux, err, dr=15)
    with pytest.raises(ValueError, match="not supported"):
        continuum_normalise(flux, err, dr=12)


def test_apstar_dr_from_name():
    assert apstar_dr("/x/apStar-dr17-2M0.fits") == 17
    assert apstar_dr("apStar-r8-2M0.fits") == 14
    assert apstar_dr("apStar-r12-2M0.fits") == 16
    assert apstar_dr("star.fits", default=14) == 14


def _bad_files(tmp_path, data_path):
    folder = tmp_path / "spectra"
    folder.mkdir()
    shutil.copy(data_path(GIANT), folder)
    shutil.copy(data_path(DWARF), folder)
    (folder / "apStar-dr17-2M00000000+0000000.fits").write_bytes(b"this is not a FITS file" * 100)
    # a FITS file whose flux has the wrong length
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(100)), fits.ImageHDU(np.ones(100)),
                         fits.ImageHDU(np.zeros(100, dtype=np.int32))])
    hdul.writeto(folder / "apStar-dr17-2M11111111+1111111.fits")
    (tmp_path / "empty").mkdir()
    return folder


def test_batch_reports_and_skips(tmp_path, data_path, capsys):
    folder = _bad_files(tmp_path, data_path)
    missing = str(tmp_path / "apStar-dr17-missing.fits")
    batch = load_apstar_batch([folder, missing, tmp_path / "empty"], progress=False)
    ds = batch.dataset
    assert batch.n_input == 6 and len(ds) == 2 and len(batch.failed) == 4
    # folder files sorted by name: 2M00.. (corrupt), 2M11.. (bad shape), 2M17.., 2M19..
    assert list(ds["apogee_id"]) == ["2M17335483-2753043", "2M19485057+5005279"]
    reasons = dict(batch.failed)
    assert "OSError" in reasons[str(folder / "apStar-dr17-2M00000000+0000000.fits")]
    assert "ApStarError" in reasons[str(folder / "apStar-dr17-2M11111111+1111111.fits")]
    assert "expected 8575 pixels" in reasons[str(folder / "apStar-dr17-2M11111111+1111111.fits")]
    assert "FileNotFoundError" in reasons[missing]
    assert "no apStar" in reasons[str(tmp_path / "empty")]
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert sum(line.startswith("skipped ") for line in lines) == 4
    assert lines[-1].startswith("read 2 of 6 apStar input(s); skipped 4")
    # the rows are the single-file results
    dwarf = load_apstar(data_path(DWARF))
    np.testing.assert_array_equal(ds["spectra"][1], dwarf.spectrum.astype(np.float32))
    assert ds["mag"][1] == dwarf.mag and ds["mag_ext"][0] == pytest.approx(0.4688, abs=5e-5)
    assert list(ds["nvisits"]) == [3, 1] and ds.attrs == {"band": "Ks", "continuum_dr": 17}
    assert list(ds["apstar_row"]) == [1, 0]  # the giant's globally weighted combination; the dwarf's one spectrum
    np.testing.assert_array_equal(ds["spectra"][0], load_apstar(data_path(GIANT)).spectrum.astype(np.float32))
    assert str(ds.unit("ra")) == "deg" and str(ds.unit("vscatter")) == "km / s"
    assert all(name in ds for name in header_keywords())
    with pytest.raises(ValueError, match="empty"):
        load_apstar_batch([])
    paths, empty = find_apstar_files(folder)
    assert len(paths) == 4 and not empty


def test_header_keywords_come_from_the_apogee_map(data_path):
    path = data_path(DWARF)
    raw = read_apstar(path)
    header = fits.getheader(path)
    assert set(raw.meta) == set(header_keywords())
    assert header_keywords()["mag_ext"] == "AKTARG"  # allStar's AK_TARG, cut to a FITS keyword's 8 characters
    assert raw.meta["mag_ext"] == pytest.approx(header["AKTARG"]) and raw.meta["mag_error"] == header["K_ERR"]
    assert raw.meta["apogee_id"] == header["OBJID"]


def test_header_missing_values(tmp_path, data_path):
    path = tmp_path / "apStar-dr17-2M19485057+5005279.fits"
    with fits.open(data_path(DWARF)) as hdul:
        hdul[0].header["AKTARG"] = -9999.990234375
        del hdul[0].header["K"]
        del hdul[0].header["OBJID"]
        hdul.writeto(path)
    star = load_apstar(path)
    assert star.mag == MAGIC_NUMBER and star.mag_ext == MAGIC_NUMBER
    assert star.apogee_id == "2M19485057+5005279"  # from the file name


def test_failed_continuum_fit_is_refused(tmp_path, data_path):
    path = tmp_path / DWARF
    with fits.open(data_path(DWARF)) as hdul:
        hdul[1].data[0, 300:400] = np.nan  # inside the blue detector
        hdul.writeto(path)
    # astroNN itself sets the whole detector to 1 ...
    raw = read_apstar(path)
    spec, _ = continuum_normalise(raw.flux, raw.flux_err, raw.bitmask)
    assert np.all(spec[:3028] == 1.0)
    # ... which load_apstar refuses, so that a batch reports and skips the file
    with pytest.raises(ValueError, match="blue detector failed"):
        load_apstar(path)
    batch = load_apstar_batch([path, data_path(DWARF)], progress=False, verbose=False)
    assert len(batch.dataset) == 1 and "blue detector" in batch.failed[0][1]


def test_cli_spectra(tmp_path, data_path, capsys):
    out = tmp_path / "data.h5"
    png = tmp_path / "spectra.png"
    missing = str(tmp_path / "apStar-dr17-missing.fits")
    rc = main(["spectra", data_path(DWARF), data_path(GIANT), missing, "--out", str(out), "--plot", str(png),
               "--no-progress", "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    summary = json.loads(captured.out)
    assert summary["n_written"] == 2 and summary["n_skipped"] == 1 and summary["skipped"][0]["path"] == missing
    assert f"skipped {missing}: FileNotFoundError" in captured.err
    ds = read_dataset(out, require=("spectra", "spectra_err", "mag", "mag_ext", "apogee_id", "ra", "dec"))
    assert list(ds["apogee_id"]) == ["2M19485057+5005279", "2M17335483-2753043"]
    assert ds["mag"][0] == pytest.approx(10.522, abs=1e-6)
    np.testing.assert_array_equal(ds["spectra"][0], load_apstar(data_path(DWARF)).spectrum.astype(np.float32))
    assert png.stat().st_size > 10000
    # existing output, bad suffix, nothing readable: exit 2 and no (new) file
    assert main(["spectra", data_path(DWARF), "--out", str(tmp_path / "one.h5"), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 1 spectra to {tmp_path / 'one.h5'} (0 of 1 input(s) skipped)")
    assert main(["spectra", data_path(DWARF), "--out", str(out), "--no-progress"]) == 2
    assert main(["spectra", data_path(DWARF), "--out", str(tmp_path / "x.fits"), "--no-progress"]) == 2
    assert main(["spectra", missing, "--out", str(tmp_path / "none.h5"), "--no-progress"]) == 2
    assert not (tmp_path / "none.h5").exists() and not (tmp_path / "x.fits").exists()
    err = capsys.readouterr().err
    assert "already exists" in err and "none of the 1 input(s) could be read" in err


def test_cli_spectra_row_option(tmp_path, data_path, capsys):
    with fits.open(data_path(GIANT)) as hdul:
        flux, flux_err, bitmask = (np.asarray(hdul[i].data) for i in (1, 2, 3))
    for option, index in ((None, 1), ("global", 1), ("pixel", 0), ("3", 3)):
        out = tmp_path / f"giant_{option}.h5"
        argv = ["spectra", data_path(GIANT), data_path(DWARF), "--out", str(out), "--no-progress"]
        assert main(argv + (["--row", option] if option else [])) == 0
        ds = read_dataset(out)
        ref, _ = apogee_continuum(flux[index], flux_err[index], dr=17, bitmask=bitmask[index],
                                  target_bit=list(APOGEE_PIXMASK_BITS))
        np.testing.assert_array_equal(ds["spectra"][0], ref[0].astype(np.float32))
        assert list(ds["apstar_row"]) == [index, 0]  # the single-visit dwarf: its one spectrum whatever --row
    for bad in ("-1", "combined"):
        with pytest.raises(SystemExit) as exc:
            main(["spectra", data_path(GIANT), "--out", str(tmp_path / "bad.h5"), "--row", bad])
        assert exc.value.code == 2
    assert "argument --row" in capsys.readouterr().err and not (tmp_path / "bad.h5").exists()


def test_plot_spectra_rejects_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="7514"):
        plot_spectra(np.ones((2, 100)), str(tmp_path / "x.png"))
