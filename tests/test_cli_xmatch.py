"""``astronn-gaiacal xmatch``: formats, local and archive paths, exit code 2 on bad input, 3 on an outage."""
import json
import os
import socket

import numpy as np
import pytest
from astropy.table import Table

import astronn_gaiacal  # noqa: F401  (compatibility layer first)
from astronn_gaiacal.sources import xmatch
from astronn_gaiacal.cli import main
from gaia_fake import arcsec_offset, fake_gaia, make_sky


@pytest.fixture
def files(tmp_path, rng):
    n = 12
    ra = rng.uniform(0, 360, n)
    dec = rng.uniform(-60, 60, n)
    sep = np.where(np.arange(n) % 3 == 0, 2.5, 0.7)  # every third star has no Gaia source within 2"
    gra, gdec = arcsec_offset(ra, dec, sep, 0.0)
    sky = make_sky(gra, gdec)
    stars = Table({"APOGEE_ID": [f"2M{i:08d}" for i in range(n)], "RA": ra, "DEC": dec, "K": rng.uniform(8, 12, n)})
    stars.write(tmp_path / "stars.csv")
    extract = Table(sky[xmatch.gaia_columns("dr3", with_2mass=True, by="source_id")])
    for name in extract.colnames:
        if hasattr(extract[name], "mask"):
            extract[name] = extract[name].filled(np.nan if extract[name].dtype.kind == "f" else 0)
    extract.write(tmp_path / "gaia.fits")
    return tmp_path, stars, sky, sep <= 2.0


def test_local_match_writes_input_plus_gaia_columns(files, capsys):
    path, stars, sky, hit = files
    out, png = path / "out.ecsv", path / "xm.png"
    rc = main(["xmatch", str(path / "stars.csv"), "--release", "dr3", "--local", str(path / "gaia.fits"),
               "--ra", "RA", "--dec", "DEC", "--out", str(out), "--plot", str(png)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == len(stars) and summary["matched"] == hit.sum()
    result = Table.read(out)
    assert result.colnames[:4] == ["APOGEE_ID", "RA", "DEC", "K"]
    np.testing.assert_array_equal(result["APOGEE_ID"], stars["APOGEE_ID"])
    np.testing.assert_array_equal(~result["source_id"].mask, hit)
    np.testing.assert_array_equal(result["source_id"][hit], sky["source_id"][hit])
    np.testing.assert_allclose(result["xmatch_sep"][hit], 0.7, atol=1e-6)
    assert result["parallax"].unit == "mas"
    with open(png, "rb") as f:
        assert f.read(4) == b"\x89PNG"


@pytest.mark.parametrize("suffix", [".fits", ".parquet", ".csv"])
def test_output_formats(files, suffix):
    path, stars, sky, hit = files
    out = path / f"out{suffix}"
    assert main(["xmatch", str(path / "stars.csv"), "--release", "dr3", "--local", str(path / "gaia.fits"),
                 "--out", str(out)]) == 0
    result = Table.read(out)
    assert len(result) == len(stars) and "gaia_ra" in result.colnames and "RA" in result.colnames
    matched = np.asarray(result["source_id"].filled(-1) if hasattr(result["source_id"], "mask")
                         else result["source_id"])
    np.testing.assert_array_equal(matched[hit], sky["source_id"][hit])


def test_archive_path_with_2mass(files, monkeypatch, capsys):
    path, stars, sky, hit = files
    gaia, fake = fake_gaia(sky)
    monkeypatch.setattr(xmatch, "gaia_archive", lambda url: gaia)
    out = path / "out.parquet"
    rc = main(["xmatch", str(path / "stars.csv"), "--release", "edr3", "--with-2mass", "--chunk-size", "5",
               "--cache-dir", str(path / "cache"), "--archive-url", "http://fake/", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert len(fake.jobs) == 3 and "gaiaedr3.tmass_psc_xsc_best_neighbour" in fake.jobs[0]["query"]
    result = Table.read(out)
    ks = np.asarray(result["ks_m"])
    np.testing.assert_allclose(ks[hit], np.asarray(sky["ks_m"])[hit], rtol=1e-6)
    assert np.all(np.isnan(ks[~hit]))
    assert len(os.listdir(path / "cache")) == 3


def test_archive_failure_exits_3_with_one_line(files, capsys):
    path, _, _, _ = files
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = path / "out.fits"
    rc = main(["xmatch", str(path / "stars.csv"), "--release", "dr2", "--archive-url", f"http://127.0.0.1:{port}/",
               "--retries", "0", "--no-cache", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 3
    assert len(err.splitlines()) == 1
    assert err.startswith("astronn-gaiacal xmatch: error: cannot reach the Gaia archive (http://127.0.0.1:")
    assert not out.exists()


def test_bad_input_exits_2(files, capsys):
    path, _, _, _ = files
    args = ["xmatch", str(path / "stars.csv"), "--release", "dr3", "--local", str(path / "gaia.fits")]
    assert main(args + ["--ra", "RAJ2000", "--out", str(path / "a.fits")]) == 2
    assert "ra: column 'RAJ2000' not in the table" in capsys.readouterr().err
    (path / "b.fits").write_text("x")
    assert main(args + ["--out", str(path / "b.fits")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--out", str(path / "c.txt")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert not (path / "c.txt").exists()


def test_hdf5_dataset_gets_gaia_columns(files, rng):
    dataset = pytest.importorskip("astronn_gaiacal.io.dataset")
    path, stars, sky, hit = files
    spectra = rng.normal(1, 0.01, (len(stars), 9))
    ds = dataset.Dataset(spectra=spectra, spectra_err=np.full_like(spectra, 0.01),
                         columns={"apogee_id": np.asarray(stars["APOGEE_ID"]), "ra": np.asarray(stars["RA"]),
                                  "dec": np.asarray(stars["DEC"]), "mag": np.asarray(stars["K"])},
                         units={"ra": "deg", "dec": "deg", "mag": "mag"})
    dataset.write_dataset(path / "in.h5", ds)
    out = path / "out.h5"
    assert main(["xmatch", str(path / "in.h5"), "--release", "dr3", "--local", str(path / "gaia.fits"),
                 "--out", str(out)]) == 0
    back = dataset.read_dataset(str(out))
    np.testing.assert_allclose(back["spectra"], spectra)
    np.testing.assert_array_equal(back["source_id"][hit], sky["source_id"][hit])
    assert np.all(back["source_id"][~hit] == -9999) and np.all(np.isnan(back["parallax"][~hit]))
    np.testing.assert_allclose(back["gaia_ra"][hit], sky["ra"][hit])
    np.testing.assert_allclose(back["ra"], stars["RA"])
    # a plain table in, the dataset format out
    assert main(["xmatch", str(path / "stars.csv"), "--release", "dr3", "--local", str(path / "gaia.fits"),
                 "--out", str(path / "plain.h5")]) == 0
    plain = dataset.read_dataset(str(path / "plain.h5"))
    np.testing.assert_allclose(plain["parallax"][hit], sky["parallax"][hit])
