"""The refuse / warn-and-flag / never-drop policy (docs/policy.rst) through the command line and the Python API.

Every refusal exits 2 with one line naming the argument or column, leaves no file behind and touches nothing
outside the tool's own outputs; every implausible star of a run that exits 0 is flagged and counted.
"""
import json
import os

import numpy as np
import pytest
from astropy.table import QTable, Table

from astronn_gaiacal.cli import main
from astronn_gaiacal.io.dataset import Dataset, MissingColumnError, read_dataset

from _toy import N_PIX, toy_survey

N = 120
PAPER_MODEL = os.path.join(os.path.dirname(__file__), "data", "paper_models", "astroNN_constant_model")


def toy_dataset(n=N, seed=3):
    d = toy_survey(n, seed=seed, n_pixels=N_PIX, zeropoint=-0.1)
    return Dataset(
        spectra=d["spectra"],
        columns={"mag": d["mag"], "mag_ext": np.zeros(n), "parallax": d["parallax"],
                 "parallax_error": d["parallax_error"], **d["features"], "source_id": np.arange(n) + 10_000,
                 "apogee_id": np.array([f"toy{i}" for i in range(n)])},
        units={"parallax": "mas", "parallax_error": "mas", "mag": "mag", "teff": "K"},
        attrs={"band": "Ks", "gaia_release": "dr2"},
    )


def without(ds, name):
    """``ds`` without column ``name``."""
    return Dataset(spectra=ds["spectra"], columns={n: ds[n] for n in ds.names if n != name},
                   units={k: v for k, v in ds.units.items() if k != name}, attrs=ds.attrs)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(folder):
    """Every path under ``folder`` with its size and modification time."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.stat(path)
            state[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return state


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a toy dataset and a constant and a multivariate toy model trained on it (1 epoch)."""
    import _toy  # noqa: F401  (registers ToyApogeeBCNN)

    folder = tmp_path_factory.mktemp("policy")
    toy_dataset().write(str(folder / "toy.h5"))
    for offset in ("constant", "multivariate"):
        assert main(["train", str(folder / "toy.h5"), "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", offset, "--epochs", "1",
                     "--out", str(folder / offset)]) == 0
    return folder


def _bad_files(folder):
    """Inputs with a structural fault, written once into ``folder``."""
    ds = toy_dataset()
    (folder / "a_folder.h5").mkdir(exist_ok=True)  # a folder named like a dataset file
    table = ds.to_table()
    strings = table.copy()
    strings["parallax"] = np.array(["n/a"] * len(strings))
    strings.write(folder / "string_parallax.fits", overwrite=True)
    arcsec = ds.with_columns(parallax=ds["parallax"] / 1000.0, parallax_error=ds["parallax_error"] / 1000.0)
    arcsec.write(str(folder / "arcsec.h5"), overwrite=True)
    without(ds, "phot_g_mean_mag").write(str(folder / "no_g.h5"), overwrite=True)
    Table({"phot_g_mean_mag": ["a"] * 5, "bp_rp": np.ones(5), "teff": np.full(5, 4500.0)}).write(
        folder / "string_feature.fits", overwrite=True)
    (folder / "na.csv").write_text("phot_g_mean_mag,bp_rp,teff\n12,1.5,4500\nN/A,1.5,4600\n")


REFUSALS = [
    # (argv with {w} the work folder, text the one-line message must contain)
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--batch-size", "0", "--out", "{w}/new"], "--batch-size"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--lr", "0", "--out", "{w}/new"], "--lr"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--lr", "-1", "--out", "{w}/new"], "--lr"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--epochs", "0", "--out", "{w}/new"], "--epochs"),
    # non-finite floats and out-of-range seeds are refused for every command, before anything runs
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--lr", "inf", "--out", "{w}/new"], "--lr must be a finite"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--loss", "gaia_student_t_nll", "--nu", "inf", "--out",
      "{w}/new"], "--nu must be a finite"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--seed", "-1", "--out", "{w}/new"], "--seed"),
    (["simulate", "{w}/new.h5", "-n", "10", "--seed", "-1"], "--seed must be an integer from 0"),
    (["simulate", "{w}/new.h5", "-n", "10", "--seed", str(2**32)], "--seed"),
    (["simulate", "{w}/new.h5", "-n", "10", "--zeropoint-uas", "nan"], "--zeropoint-uas must be a finite"),
    (["simulate", "{w}/new.h5", "-n", "10", "--zeropoint-uas", "1e9"], "--zeropoint-uas 1e+09 is implausible"),
    (["simulate", "{w}/new.h5", "-n", "10000000000000"], "GB for their spectra"),
    (["predict", "{w}/constant", "{w}/a_folder.h5", "--out", "{w}/new.fits"], "is a folder, not an HDF5"),
    (["zeropoint", "{w}/multivariate", "{w}/userdir/notes.fits", "--out", "{w}/new.fits", "--seed", "-1"], "--seed"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--training-noise-snr", "0", "--out", "{w}/new"],
     "--training-noise-snr"),
    (["train", "{w}/string_parallax.fits", "--model", "ToyApogeeBCNN", "--out", "{w}/new"], "'parallax'"),
    (["train", "{w}/arcsec.h5", "--model", "ToyApogeeBCNN", "--out", "{w}/new"], "'parallax_error'"),
    (["zeropoint", "{w}/multivariate", "{w}/string_feature.fits", "--out", "{w}/new.fits"], "'phot_g_mean_mag'"),
    (["zeropoint", "{w}/multivariate", "{w}/na.csv", "--out", "{w}/new.csv"], "'phot_g_mean_mag'"),
    (["zeropoint", "{w}/constant", "--mc-num", "0"], "--mc-num"),
    (["zeropoint", "{w}/constant", "--catalog", "{w}/x.parquet", "--out", "{w}/new", "--mc-num", "0"], "--mc-num"),
    (["predict", "{w}/constant", "{w}/toy.h5", "--out", "{w}/new.fits", "--mc-num", "0"], "--mc-num"),
    (["predict", PAPER_MODEL, "{w}/toy.h5", "--out", "{w}/new.fits"], "astronn-gaiacal train"),
    (["zeropoint", PAPER_MODEL], "astronn-gaiacal train"),
    (["predict", "{w}/multivariate", "{w}/no_g.h5", "--out", "{w}/new.fits"], "phot_g_mean_mag"),
    (["simulate", "{w}/new.h5", "--test-out", "{w}/new.h5", "-n", "10"], "--test-out"),
    # --overwrite replaces only the tool's own outputs; the input is never the output
    (["simulate", "{w}/toy.h5", "--test-out", "{w}/toy.h5", "-n", "10", "--overwrite"], "--test-out"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--out", "{w}", "--overwrite"], "input"),
    (["train", "{w}/toy.h5", "--model", "ToyApogeeBCNN", "--out", "{w}/userdir", "--overwrite"],
     "not written by astronn-gaiacal"),
    (["predict", "{w}/constant", "{w}/toy.h5", "--out", "{w}/toy.h5", "--overwrite"], "input"),
    (["zeropoint", "{w}/multivariate", "{w}/userdir/notes.fits", "--out", "{w}/userdir/notes.fits", "--overwrite"],
     "input"),
    (["predict", "{w}/constant", "{w}/toy.h5", "--out", "{w}/userdir/catalogue.fits", "--overwrite"],
     "not written by astronn-gaiacal"),
]


@pytest.mark.parametrize("argv, text", REFUSALS, ids=[" ".join(a[:1] + a[3:5]) for a, _ in REFUSALS])
def test_refused_with_exit_2_one_line_and_nothing_touched(work, capsys, argv, text):
    _bad_files(work)
    user = work / "userdir"
    user.mkdir(exist_ok=True)
    (user / "notes.txt").write_text("my notes")
    Table({"phot_g_mean_mag": [12.0], "bp_rp": [1.5], "teff": [4500.0]}).write(user / "notes.fits", overwrite=True)
    Table({"a": [1]}).write(user / "catalogue.fits", overwrite=True)  # a FITS file the tool did not write
    before = _snapshot(work)
    code, _, err = _run(capsys, *[a.format(w=work) for a in argv])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"astronn-gaiacal {argv[0]}: error: ") and text in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(work) == before  # no partial output, nothing else touched


def test_a_model_class_the_process_does_not_know_is_exit_2_naming_it(work, tmp_path):
    """A folder saved by a user's own subclass, opened by the CLI in a process that never imported it."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "astronn_gaiacal", "predict", str(work / "constant"),
                           str(work / "toy.h5"), "--out", str(tmp_path / "c.fits")], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and len(lines) == 1
    assert "model class ToyApogeeBCNN" in lines[0] and "after importing the module that defines it" in lines[0]
    assert not (tmp_path / "c.fits").exists()


def test_a_bug_inside_training_is_exit_1_with_traceback(work, capsys, monkeypatch):
    from astronn_gaiacal import pipeline

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the library")

    monkeypatch.setattr(pipeline, "train", broken)
    code, _, err = _run(capsys, "train", work / "toy.h5", "--model", "ToyApogeeBCNN", "--ensemble", "1", "--out", work / "bug")
    assert code == 1 and "Traceback" in err and "a bug inside the library" in err
    assert not (work / "bug").exists()


def _corrupted(work):
    """The toy dataset with one star of each implausible kind; returns its path and the rows."""
    ds = toy_dataset(seed=5)
    spectra, mag = ds["spectra"].copy(), ds["mag"].copy()
    rows = {"zero": 0, "unnormalised": 1, "mag99": 2}
    spectra[rows["zero"]] = 0.0
    spectra[rows["unnormalised"]] *= 1000.0
    mag[rows["mag99"]] = 99.99
    columns = {n: ds[n] for n in ds.names if n != "spectra"}
    columns["mag"] = mag
    columns["source_id"] = columns["source_id"].copy()
    columns["source_id"][5] = columns["source_id"][4]  # the same Gaia star twice
    rows["duplicate"] = 5
    plx, plx_err = columns["parallax"].copy(), columns["parallax_error"].copy()
    rows.update(negative_error=6, zero_error=7, huge_parallax=8)
    plx_err[6], plx_err[7], plx[8] = -plx_err[6], 0.0, 1e6  # one bad Gaia row each; the column's unit is fine
    columns["parallax"], columns["parallax_error"] = plx, plx_err
    path = work / "corrupted.h5"
    Dataset(spectra=spectra, columns=columns, units=ds.units, attrs=ds.attrs).write(str(path), overwrite=True)
    return path, rows


def test_predict_flags_every_implausible_star_and_prints_valid_json(work, capsys):
    path, rows = _corrupted(work)
    out = work / "flagged.fits"
    code, stdout, err = _run(capsys, "predict", work / "multivariate", path, "--out", out, "--mc-num", "5", "--json",
                             "--overwrite")
    assert code == 0, err
    summary = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    cat = QTable.read(out)
    bad_spectrum = np.zeros(N, bool)
    bad_spectrum[[rows["zero"], rows["unnormalised"]]] = True
    np.testing.assert_array_equal(cat["flag_spectrum"], bad_spectrum)
    assert np.flatnonzero(cat["flag_magnitude"]).tolist() == [rows["mag99"]]
    assert np.flatnonzero(cat["flag_duplicate"]).tolist() == [rows["duplicate"]]
    # a star flagged for its spectrum or magnitude has no NN distance (-9999); its weighted values fall back on Gaia
    no_nn = bad_spectrum.copy()
    no_nn[rows["mag99"]] = True
    assert np.all(cat["dist"].value[no_nn] == -9999) and np.all(cat["dist"].value[~no_nn] > 0)
    ds = read_dataset(str(path))
    zp = cat["zeropoint"].to_value("mas")
    expected = 1000.0 / (ds["parallax"][no_nn] - zp[no_nn])
    got = cat["weighted_dist"].to_value("pc")[no_nn]
    positive = expected > 0
    np.testing.assert_allclose(got[positive], expected[positive], rtol=1e-5)
    assert np.all(got[~positive] == -9999)
    assert summary["n_with_distance"] == N - no_nn.sum()
    assert summary["flags"]["flag_spectrum"] == 2 and summary["flags"]["flag_magnitude"] == 1
    assert summary["flags"]["flag_duplicate"] == 1
    # an unusable Gaia parallax is flagged, counted and left out of the weighting: the NN value alone remains
    bad_plx = [rows["negative_error"], rows["zero_error"], rows["huge_parallax"]]
    assert np.flatnonzero(cat["flag_parallax"]).tolist() == bad_plx and summary["flags"]["flag_parallax"] == 3
    np.testing.assert_allclose(cat["weighted_parallax"].value[bad_plx], cat["nn_parallax"].value[bad_plx], rtol=1e-6)
    np.testing.assert_allclose(cat["weighted_parallax_error"].value[bad_plx], cat["nn_parallax_error"].value[bad_plx],
                               rtol=1e-6)
    good = ~no_nn
    good[bad_plx] = False
    assert np.all(cat["weighted_parallax_error"].value[good] < cat["nn_parallax_error"].value[good])  # Gaia helps


def test_zeropoint_table_flags_extrapolation_against_the_models_stored_ranges(work, capsys):
    with open(work / "multivariate" / "astroNN_model_parameter.json") as f:
        ranges = json.load(f)["astronn_gaiacal"]["feature_ranges"]
    rng = np.random.default_rng(1)
    n = 200  # 150 stars inside the training ranges, 50 over the G 3-25, Teff up to 50,000 K
    inside = {name: rng.uniform(lo, hi, 150) for name, (lo, hi) in ranges.items()}
    wide = {"phot_g_mean_mag": rng.uniform(3, 25, 50), "bp_rp": rng.uniform(0.5, 3.0, 50),
            "teff": rng.uniform(3000, 50000, 50)}
    table = Table({name: np.concatenate([inside[name], wide[name]]) for name in wide})
    table.write(work / "wide.fits", overwrite=True)
    code, stdout, err = _run(capsys, "zeropoint", work / "multivariate", work / "wide.fits", "--out",
                             work / "wide_zp.fits", "--mc-num", "5", "--json", "--overwrite")
    assert code == 0, err
    summary = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    expected = np.zeros(n, bool)
    for name, (lo, hi) in ranges.items():
        expected |= (np.asarray(table[name]) < lo) | (np.asarray(table[name]) > hi)
    back = Table.read(work / "wide_zp.fits")
    np.testing.assert_array_equal(np.asarray(back["out_of_range"], bool), expected)
    assert summary["n_out_of_range"] == expected.sum() > 0
    zp = np.asarray(back["zeropoint"]) * 1000
    assert summary["mean_uas"] == pytest.approx(np.mean(zp[~expected]), rel=1e-9)
    for name, trend in summary["quadratic_trends"].items():
        assert trend["valid_range"] == pytest.approx(ranges[name])  # the model's range, not the input's
    # the text summary prints the model's training ranges
    code, stdout, _ = _run(capsys, "zeropoint", work / "multivariate", work / "wide.fits", "--out",
                           work / "wide_zp.fits", "--mc-num", "5", "--overwrite")
    assert code == 0 and "outside the training ranges" in stdout
    lo, hi = ranges["teff"]
    assert f"{lo:.4g}..{hi:.4g}" in stdout


def test_python_api_never_drops_the_zeropoint(work):
    from astronn_gaiacal import pipeline
    from astronn_gaiacal.models import load

    net = load(str(work / "multivariate"))
    net.mc_num = 3
    ds = read_dataset(str(work / "toy.h5"))
    no_g = without(ds, "phot_g_mean_mag")
    with pytest.raises(MissingColumnError, match="phot_g_mean_mag"):
        pipeline.catalogue_for(net, no_g, mc_num=3)
    stars = pipeline.predict_stars(net, ds, mc_num=3)
    assert "zeropoint" in stars and not stars["out_of_range"].any()  # the training set lies inside its own ranges
    with pytest.raises(ValueError, match="learning rate"):
        pipeline.train(ds, model="ToyApogeeBCNN", offset="constant", lr=0.0, epochs=1)


def test_overwrite_replaces_the_tools_own_outputs_and_new_folders_are_readable(work, capsys):
    out = work / "again.fits"
    for _ in range(2):
        code, _, err = _run(capsys, "predict", work / "constant", work / "toy.h5", "--out", out, "--mc-num", "2",
                            "--overwrite")
        assert code == 0, err
    model = work / "retrained"
    for _ in range(2):
        code, _, err = _run(capsys, "train", work / "toy.h5", "--model", "ToyApogeeBCNN", "--ensemble", "1", "--epochs", "1", "--out",
                            model, "--overwrite")
        assert code == 0, err
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(model).st_mode & 0o777 == 0o777 & ~umask


def test_kernel_cache_refuses_a_folder_others_can_write(tmp_path, monkeypatch):
    """A pre-created, group/other-writable cache folder is never used: the kernels go to a private mkdtemp folder."""
    pytest.importorskip("numba")
    from astronn_gaiacal.nn import fused

    hostile = tmp_path / "kernels"
    hostile.mkdir()
    os.chmod(hostile, 0o777)  # as if another user had made it world-writable for us
    monkeypatch.setenv(fused.CACHE_ENV, str(hostile))
    monkeypatch.setattr(fused, "_PRIVATE", [])
    assert not fused.safe_folder(str(hostile))
    folder = fused.kernel_cache_dir()
    assert folder != str(hostile) and fused.safe_folder(folder)
    assert os.stat(folder).st_uid == os.getuid() and os.stat(folder).st_mode & 0o777 == 0o700
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    assert not fused.safe_folder(str(link))  # a symbolic link is refused even when it points to a safe folder
    # a folder of this user with mode 0700 is used
    own = tmp_path / "own"
    monkeypatch.setenv(fused.CACHE_ENV, str(own))
    assert fused.kernel_cache_dir() == str(own) and os.stat(own).st_mode & 0o777 == 0o700


def test_kernel_source_runs_from_memory_not_from_the_shared_file(tmp_path, monkeypatch):
    """The generated source is executed as generated; what the cache file holds is never imported."""
    from astronn_gaiacal.nn import fused

    monkeypatch.setenv(fused.CACHE_ENV, str(tmp_path))
    source = "VALUE = 42\n"
    path = tmp_path / "astronn_gaiacal_probe_module.py"
    path.write_text("VALUE = 'swapped'\nraise SystemExit('the shared file was executed')\n")
    original = fused.atomic_path

    def swap_after_write(target, overwrite=False):  # the file is replaced right after the process writes it
        class Swap:
            def __enter__(self):
                self.ctx = original(target, overwrite=overwrite)
                return self.ctx.__enter__()

            def __exit__(self, *exc):
                done = self.ctx.__exit__(*exc)
                path.write_text("VALUE = 'swapped'\n")
                return done

        return Swap()

    monkeypatch.setattr(fused, "atomic_path", swap_after_write)
    module = fused.load_module("astronn_gaiacal_probe_module", source)
    assert module.VALUE == 42 and path.read_text() == "VALUE = 'swapped'\n"


@pytest.fixture
def sky_files(tmp_path):
    """A spectra dataset of 8 stars and DR2 (no ruwe column, as gaia_source has none) and DR3 extracts of their
    Gaia sources, with different parallaxes."""
    from astronn_gaiacal.sources import xmatch

    from gaia_fake import make_sky

    rng = np.random.default_rng(11)
    n = 8
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-60, 60, n)
    sky = make_sky(ra, dec)
    dr3 = Table(sky[xmatch.gaia_columns("dr3", by="source_id")])
    dr3["parallax"] = rng.uniform(0.2, 2.0, n)
    dr2 = Table(sky[[c for c in xmatch.gaia_columns("dr2", by="source_id") if c != "ruwe"]])
    dr2["parallax"] = np.asarray(dr3["parallax"]) - 0.05
    for table in (dr2, dr3):
        for name in table.colnames:
            if hasattr(table[name], "mask"):
                table[name] = table[name].filled(np.nan if table[name].dtype.kind == "f" else 0)
    dr2.write(tmp_path / "dr2.fits")
    dr3.write(tmp_path / "dr3.fits")
    spectra = rng.normal(1, 0.01, (n, 9))
    Dataset(spectra=spectra, columns={"ra": ra, "dec": dec, "mag": rng.uniform(8, 12, n)},
            units={"ra": "deg", "dec": "deg", "mag": "mag"}).write(str(tmp_path / "stars.h5"))
    return tmp_path, dr2, dr3


def test_second_crossmatch_replaces_the_gaia_columns_and_release(sky_files, capsys):
    path, dr2, dr3 = sky_files
    with pytest.warns(UserWarning, match="no ruwe column"):  # a DR2 extract without ruwe is complete
        code, _, err = _run(capsys, "xmatch", path / "stars.h5", "--release", "dr2", "--local", path / "dr2.fits",
                            "--out", path / "x2.h5")
    assert code == 0, err
    first = read_dataset(str(path / "x2.h5"))
    assert first.attrs["gaia_release"] == "dr2" and np.all(np.isnan(first["ruwe"]))
    np.testing.assert_allclose(first["parallax"], dr2["parallax"])
    before = _snapshot(path)
    code, _, err = _run(capsys, "xmatch", path / "x2.h5", "--release", "dr3", "--local", path / "dr3.fits",
                        "--out", path / "x3.h5")
    assert code == 2 and "--overwrite" in err and "dr2" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(path) == before
    code, _, err = _run(capsys, "xmatch", path / "x2.h5", "--release", "dr3", "--local", path / "dr3.fits",
                        "--out", path / "x3.h5", "--overwrite")
    assert code == 0, err
    second = read_dataset(str(path / "x3.h5"))
    assert second.attrs["gaia_release"] == "dr3"
    np.testing.assert_allclose(second["parallax"], dr3["parallax"])  # the columns train/predict read are DR3's
    assert not [n for n in second.names if n.startswith("gaia_") and n[5:] in ("parallax", "source_id", "ruwe")]
    np.testing.assert_allclose(second["spectra"], first["spectra"])


def test_spectra_never_go_to_csv_or_ecsv(sky_files, capsys):
    path, _, _ = sky_files
    for suffix in (".ecsv", ".csv"):
        code, _, err = _run(capsys, "xmatch", path / "stars.h5", "--release", "dr3", "--local", path / "dr3.fits",
                            "--out", path / f"x{suffix}")
        assert code == 2 and "spectra" in err and ".h5" in err and not (path / f"x{suffix}").exists()
    # what the tool writes, it reads back: the FITS and Parquet forms train the same columns
    for suffix in (".fits", ".parquet"):
        assert _run(capsys, "xmatch", path / "stars.h5", "--release", "dr3", "--local", path / "dr3.fits",
                    "--out", path / f"x{suffix}")[0] == 0
        back = read_dataset(str(path / f"x{suffix}"), require=["spectra", "mag", "parallax"])
        assert back["spectra"].shape == (8, 9)


def test_weights_are_checked_against_the_saved_checksum(work, tmp_path, capsys):
    import shutil

    from astronn_gaiacal.models.folders import WEIGHTS_FILE, read_plugin_config, weights_checksum

    folder = tmp_path / "model"
    shutil.copytree(work / "constant", folder)
    assert read_plugin_config(str(folder))["weights_sha256"] == weights_checksum(str(folder))
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    weights.write_bytes(bytes(data))  # random bytes inside the weights: h5py may still read them
    code, _, err = _run(capsys, "predict", folder, work / "toy.h5", "--out", tmp_path / "c.fits")
    assert code == 2 and "checksum" in err and not (tmp_path / "c.fits").exists()
    weights.unlink()  # a deleted weights file is named as missing, not as a checksum mismatch
    code, _, err = _run(capsys, "predict", folder, work / "toy.h5", "--out", tmp_path / "c.fits")
    assert code == 2 and f"{WEIGHTS_FILE} is missing" in err and len(err.strip().splitlines()) == 1


def test_an_edited_zeropoint_calibration_is_refused(work, tmp_path, capsys):
    import shutil

    for offset, block in (("constant", "constant"), ("multivariate", "trend")):
        folder = tmp_path / offset
        shutil.copytree(work / offset, folder)
        path = folder / "astroNN_model_parameter.json"
        params = json.loads(path.read_text())
        cal = params["astronn_gaiacal"]["zeropoint_calibration"]
        if block == "constant":
            cal["constant"]["error_uas"] = -5.0
        else:
            cal["trend"]["coefficients_uas"][0] = float("nan")
        path.write_text(json.dumps(params))
        code, _, err = _run(capsys, "zeropoint", folder, "--json")
        assert code == 2 and "stored zero-point calibration" in err and "Traceback" not in err, err


def _python_m(argv, env_extra, **kwargs):
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env_extra)
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import _toy; "
                             "from astronn_gaiacal.cli import main; sys.exit(main(sys.argv[2:]))",
                             os.path.dirname(__file__), *[str(a) for a in argv]], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **kwargs)


def _wait_for(predicate, proc, seconds=240):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_command_says_so_in_one_line_and_leaves_nothing(tmp_path, sig, code):
    """Ctrl-C (SIGINT) or SIGTERM while simulate writes: exit 130 / 143, one line, no traceback, no partial file."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "big.h5"
    # as from a terminal: a shell's background jobs (CI's included) start with SIGINT ignored, which Python keeps
    proc = subprocess.Popen([sys.executable, "-m", "astronn_gaiacal", "simulate", str(out), "-n", "30000", "--seed", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = _wait_for(lambda: any(p.startswith(".") for p in os.listdir(tmp_path)), proc)
    assert started, "simulate finished or failed before it could be interrupted"
    os.kill(proc.pid, getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert err.strip().splitlines()[-1] == "astronn-gaiacal simulate: interrupted" and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_interrupted_ensemble_training_leaves_no_copy_of_the_spectra(work, tmp_path):
    """SIGTERM: the workers are stopped and the temporary folder removed; SIGKILL: removed by the next start."""
    import signal

    from astronn_gaiacal.io.atomic import owned_tempdir

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv = ["train", work / "toy.h5", "--model", "ToyApogeeBCNN", "--ensemble", "2", "--jobs", "2", "--epochs", "50",
            "--out", tmp_path / "ens"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = _python_m(argv, {"TMPDIR": str(tmpdir)})
        started = _wait_for(lambda: any(p.startswith("astronn_gaiacal_train_") for p in os.listdir(tmpdir)), proc)
        assert started, "the training never made its temporary folder"
        os.kill(proc.pid, sig) if sig == signal.SIGTERM else os.killpg(proc.pid, sig)
        proc.wait(timeout=120)
        left = [p for p in os.listdir(tmpdir) if p.startswith("astronn_gaiacal_train_")]
        if sig == signal.SIGTERM:
            assert left == [] and not (tmp_path / "ens").exists()
        else:
            assert len(left) == 1  # a killed process cannot clean up ...
            monkey_env = os.environ.get("TMPDIR")
            os.environ["TMPDIR"] = str(tmpdir)
            try:
                import tempfile

                tempfile.tempdir = None
                with owned_tempdir("train"):  # ... so the next start does
                    assert [p for p in os.listdir(tmpdir) if p.startswith("astronn_gaiacal_train_")] != left
            finally:
                tempfile.tempdir = None
                if monkey_env is None:
                    os.environ.pop("TMPDIR")
                else:
                    os.environ["TMPDIR"] = monkey_env
            assert not (tmpdir / left[0]).exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ens")]


def test_killed_simulate_leaves_nothing_after_the_next_run(tmp_path):
    import signal

    import shutil

    out = tmp_path / "mock.h5"
    argv = ["simulate", out, "-n", "20000", "--test-out", tmp_path / "test.h5"]
    for _ in range(3):  # the kill must land while the files are written, not after the final renames
        proc = _python_m(argv, {})
        assert _wait_for(lambda: any(".partial" in p for p in os.listdir(tmp_path)), proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if not out.exists():
            break
        for p in os.listdir(tmp_path):  # too late: the run had finished; start again
            (shutil.rmtree if (tmp_path / p).is_dir() else os.remove)(tmp_path / p)
    assert any(".partial" in p for p in os.listdir(tmp_path)) and not out.exists()
    assert main(["simulate", str(out), "-n", "30"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["mock.h5"]  # the killed run's partial files are gone, no test.h5
