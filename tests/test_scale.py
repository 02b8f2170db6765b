"""Catalogue-scale inference on a real distributed.LocalCluster (2 workers): astronn_gaiacal.distributed."""
import json
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
lsdb = pytest.importorskip("lsdb")
pd = pytest.importorskip("pandas")

from astronn_gaiacal import distributed as scale  # noqa: E402
from astronn_gaiacal._compat import keras  # noqa: E402
from astronn_gaiacal.constants import is_missing  # noqa: E402
from astronn_gaiacal.io.dataset import Dataset, read_dataset  # noqa: E402
from astronn_gaiacal.models import DenseGaiaBNN, load  # noqa: E402
from astronn_gaiacal.nn.inference import dropout_disabled  # noqa: E402

from _toy import toy_survey  # noqa: E402

N_ROWS = 10**6
N_FILES = 8
N_HATS = 200_000
N_PIX = 8
FEATURES = ("phot_g_mean_mag", "bp_rp", "teff")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A multivariate DenseGaiaBNN trained for one epoch on 400 toy stars (a built-in class: workers can load it).

    Without a calibrated trend, so the catalogue path runs the offset network's MC dropout, which these tests
    check against the in-process engine (the calibrated trend: ``test_calibrated_trend_at_catalogue_scale``).
    """
    keras.utils.set_random_seed(0)
    d = toy_survey(400, seed=1, n_pixels=N_PIX)
    net = DenseGaiaBNN(hidden=(16,), offset="multivariate")
    net.max_epochs, net.verbose, net.batch_size = 1, 0, 64
    net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"], offset_features=d["features"],
            calibrate_zeropoint=False)
    return net.save(str(tmp_path_factory.mktemp("model") / "dense_mv"))


@pytest.fixture(scope="module")
def net(model_folder):
    m = load(model_folder)
    m.verbose = 0
    return m


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as c:
        yield c


@pytest.fixture(scope="module")
def mock_gaia(net):
    """10^6 mock Gaia stars; about half of them outside the training ranges, 1000 with a missing feature."""
    rng = np.random.default_rng(42)
    ranges = net.feature_ranges
    n = N_ROWS
    df = pd.DataFrame({
        "source_id": np.arange(n, dtype=np.int64) * 7 + 3,
        "ra": rng.uniform(0, 360, n),
        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
    })
    for name in FEATURES:
        lo, hi = ranges[name]
        width = hi - lo
        df[name] = rng.uniform(lo - 0.15 * width, hi + 0.15 * width, n)
    # exact range ends are inside
    df.loc[0, "phot_g_mean_mag"], df.loc[1, "teff"] = ranges["phot_g_mean_mag"][0], ranges["teff"][1]
    df.loc[rng.choice(n, 1000, replace=False), "bp_rp"] = np.nan
    return df


@pytest.fixture(scope="module")
def parquet_dir(mock_gaia, tmp_path_factory):
    d = tmp_path_factory.mktemp("gaia_parquet")
    for i, rows in enumerate(np.array_split(np.arange(N_ROWS), N_FILES)):
        mock_gaia.iloc[rows].to_parquet(d / f"gaia-{i}.parquet")
    return str(d)


@pytest.fixture(scope="module")
def hats_dir(mock_gaia, tmp_path_factory, client):
    """The first 2 x 10^5 rows of the mock table as a small HATS catalogue (several HEALPix pixels), built with LSDB."""
    path = tmp_path_factory.mktemp("gaia_hats") / "mock_gaia"
    cat = lsdb.from_dataframe(mock_gaia.iloc[:N_HATS], ra_column="ra", dec_column="dec", catalog_name="mock_gaia",
                              partition_rows=40_000)
    cat.write_catalog(str(path), as_collection=False, progress_bar=False)
    return str(path)


def _expected_zeropoint(net, part, mc_num=1, dropout=False, seed=None, key=None, batch_size=65536):
    """The in-process reference: the model's own predict_zeropoint on the same rows."""
    feats = {n: part[n].to_numpy(dtype=float, na_value=np.nan) for n in FEATURES}
    if dropout:
        keras.utils.set_random_seed(scale.partition_seed(seed, key))
        zp, err = net.predict_zeropoint(feats, mc_num=mc_num, batch_size=batch_size)
    else:
        with dropout_disabled(net.offset_model):
            zp, err = net.predict_zeropoint(feats, mc_num=1, batch_size=batch_size)
    return zp.to_value("mas"), err.to_value("mas")


def assert_same_numbers(got, want):
    """Equal to the in-process model: bit for bit, except for float32 rounding (1 ulp of the network's output).

    TensorFlow splits a matrix product differently with the worker's single thread than with the test
    process's thread pool, which changes the last bit of a few rows in 10^5.
    """
    got, want = np.asarray(got, float), np.asarray(want, float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    ulp = np.finfo(np.float32).eps * np.max(np.abs(want[ok]))
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=2 * ulp)
    assert np.mean(got[ok] == want[ok]) > 0.999


def _expected_flag(net, part):
    """Out-of-range rows from the stored training ranges, computed independently with pandas."""
    flag = np.zeros(len(part), bool)
    for name, (lo, hi) in net.feature_ranges.items():
        flag |= ((part[name] < lo) | (part[name] > hi)).to_numpy(dtype=bool, na_value=False)
    return flag


# ------------------------------------------------------------------ results
def test_feature_ranges_stored_in_folder(model_folder):
    with open(os.path.join(model_folder, "astroNN_model_parameter.json")) as f:
        ranges = json.load(f)["astronn_gaiacal"]["feature_ranges"]
    d = toy_survey(400, seed=1, n_pixels=N_PIX)["features"]
    for name in FEATURES:  # the fit saw 100% of the stars' features (the validation split included)
        assert ranges[name] == pytest.approx([d[name].min(), d[name].max()])


def test_parquet_million_rows_match_in_process(net, model_folder, parquet_dir, mock_gaia, client, tmp_path):
    out = tmp_path / "zp"
    summary = scale.zeropoint_catalog(model_folder, parquet_dir, out, scheduler=client, dropout=False,
                                      progress=False)
    assert summary["complete"] and summary["rows"] == N_ROWS and summary["n_partitions"] == N_FILES
    assert sorted(summary["computed"]) == [f"part.{i:05d}" for i in range(N_FILES)]
    manifest = scale.read_manifest(out, require_complete=True)
    assert manifest["rows"] == N_ROWS and len(manifest["partitions"]) == N_FILES
    n_flagged = 0
    for i, rows in enumerate(np.array_split(np.arange(N_ROWS), N_FILES)):
        key = f"part.{i:05d}"
        part = mock_gaia.iloc[rows]
        got = pd.read_parquet(out / manifest["partitions"][key]["file"])
        # row count, order and columns kept per partition
        assert len(got) == len(part) == manifest["partitions"][key]["rows"]
        np.testing.assert_array_equal(got["source_id"].to_numpy(), part["source_id"].to_numpy())
        assert list(got.columns) == list(part.columns) + list(scale.ZEROPOINT_COLUMNS)
        zp, err = _expected_zeropoint(net, part)
        assert_same_numbers(got["zeropoint"], zp)
        # one deterministic pass measures no spread: the error is unknown (NaN), in-process and in the catalogue
        assert np.isnan(err).all() and np.isnan(got["zeropoint_error"].to_numpy()).all()
        assert np.isnan(zp).sum() == part["bp_rp"].isna().sum() > 0
        flag = _expected_flag(net, part)
        np.testing.assert_array_equal(got["zeropoint_out_of_range"].to_numpy(), flag)
        assert manifest["partitions"][key]["n_out_of_range"] == flag.sum()
        n_flagged += flag.sum()
    assert 0.3 * N_ROWS < n_flagged < 0.7 * N_ROWS  # both kinds of rows are there
    # the whole output reads back as one Parquet dataset (the manifest is skipped)
    assert len(pd.read_parquet(out, columns=["zeropoint"])) == N_ROWS
    # every worker loaded the model exactly once, however many partitions it ran
    loads = client.run(scale.workers.model_loads)
    assert len(loads) == 2
    assert all(v == {os.path.abspath(model_folder): 1} for v in loads.values())


def test_mc_dropout_seeded_identical(net, model_folder, mock_gaia, client, tmp_path):
    sub = mock_gaia.iloc[:40_000]
    frame = dd.from_pandas(sub, npartitions=4)
    out = tmp_path / "zp_mc"
    summary = scale.zeropoint_catalog(model_folder, frame, out, scheduler=client, mc_num=10, seed=7,
                                      batch_size=4096, progress=False)
    assert summary["complete"]
    got = pd.read_parquet(out)
    offsets = np.cumsum([0] + [len(p) for p in frame.partitions])  # dask's own split
    for i in range(4):
        part = sub.iloc[offsets[i]:offsets[i + 1]]
        zp, err = _expected_zeropoint(net, part, mc_num=10, dropout=True, seed=7, key=f"part.{i:05d}",
                                      batch_size=4096)
        assert_same_numbers(got["zeropoint"].to_numpy()[offsets[i]:offsets[i + 1]], zp)
        assert_same_numbers(got["zeropoint_error"].to_numpy()[offsets[i]:offsets[i + 1]], err)
        assert np.nanmin(err) > 0  # real MC spread
    # the lazy API gives the same numbers
    lazy = scale.add_zeropoint(frame, model_folder, mc_num=10, seed=7, batch_size=4096).compute()
    np.testing.assert_array_equal(lazy["zeropoint"].to_numpy(), got["zeropoint"].to_numpy())


def test_hats_catalogue_in_and_out(net, model_folder, hats_dir, client, tmp_path):
    out = tmp_path / "zp_hats"
    summary = scale.zeropoint_catalog(model_folder, hats_dir, out, scheduler=client, dropout=False, progress=False)
    source = lsdb.open_catalog(hats_dir)
    pixels = source.get_healpix_pixels()
    assert summary["complete"] and summary["rows"] == N_HATS and summary["n_partitions"] == len(pixels) > 1
    result = lsdb.open_catalog(str(out))  # a HATS catalogue again
    assert result.get_healpix_pixels() == pixels
    assert result.hc_structure.catalog_info.total_rows == N_HATS
    # written by LSDB's own writer: its metadata, statistics and skymap; the run recorded in hats.properties
    for name in ("partition_info.csv", "skymap.fits", "dataset/_metadata", "dataset/_common_metadata"):
        assert (out / name).is_file(), name
    assert not (out / scale.MANIFEST_NAME).exists() and not (out / "done").exists()
    props = (out / "hats.properties").read_text()
    assert "astronn_gaiacal_config_hash=" in props and "obs_collection=mock_gaia_zeropoint" in props
    assert sorted(summary["computed"]) == sorted(f"Norder={p.order}/Dir={p.dir}/Npix={p.pixel}" for p in pixels)
    part, got = source.compute(), result.compute()  # both in pixel order
    assert len(got) == len(part) == N_HATS
    np.testing.assert_array_equal(got.index.to_numpy(), part.index.to_numpy())  # spatial index, row order kept
    np.testing.assert_array_equal(got["source_id"].to_numpy(), part["source_id"].to_numpy())
    for p in pixels:  # rows per pixel as in the source
        assert len(result.get_partition(p.order, p.pixel).compute()) == len(source.get_partition(p.order, p.pixel).compute())
    zp, _ = _expected_zeropoint(net, part)
    assert_same_numbers(got["zeropoint"].to_numpy(dtype=float, na_value=np.nan), zp)
    np.testing.assert_array_equal(got["zeropoint_out_of_range"].to_numpy(dtype=bool), _expected_flag(net, part))


def test_hats_output_resumes_and_refuses_other_options(model_folder, hats_dir, client, tmp_path):
    out = tmp_path / "zp_hats"
    first = scale.zeropoint_catalog(model_folder, hats_dir, out, scheduler=client, dropout=False, progress=False,
                                    command_key="cmd-1")
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = scale.zeropoint_catalog(model_folder, hats_dir, out, scheduler=client, dropout=False, progress=False,
                                    command_key="cmd-1")
    assert again["computed"] == [] and again["skipped"] == first["n_partitions"] and again["rows"] == N_HATS
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp  # nothing written
    # the command line's quick check finds the finished catalogue without a manifest
    done = scale.resume.finished_run(out, "cmd-1")
    assert done["complete"] and done["n_partitions"] == first["n_partitions"] and done["rows"] == N_HATS
    assert scale.resume.finished_run(out, "cmd-2") is None
    with pytest.raises(FileExistsError, match="--overwrite"):
        scale.zeropoint_catalog(model_folder, hats_dir, out, scheduler=client, mc_num=5, progress=False)
    with pytest.raises(ValueError, match="max_partitions"):
        scale.zeropoint_catalog(model_folder, hats_dir, tmp_path / "other", scheduler=client, max_partitions=1,
                                progress=False)
    # an interrupted write: two pixels lost and LSDB's finishing never ran -> the rerun writes those two again
    from astronn_gaiacal.distributed.hats_output import RUN_FILE

    props = (out / "hats.properties").read_text()
    (out / RUN_FILE).write_text(json.dumps({"config_hash": props.split("astronn_gaiacal_config_hash=")[1].split()[0]}))
    import hats
    from lsdb.io.to_hats import calculate_histogram, write_done_pixel, write_histogram
    from upath import UPath

    source, written = lsdb.open_catalog(hats_dir), lsdb.open_catalog(str(out))
    pixels = source.get_healpix_pixels()
    order = source.hc_structure.catalog_info.skymap_order
    for p in pixels[2:]:  # what LSDB leaves of a pixel it finished: its histogram and done mark
        write_histogram(calculate_histogram(written.get_partition(p.order, p.pixel).compute(), order), UPath(out), p)
        write_done_pixel(UPath(out), p)
    for p in pixels[:2]:
        os.unlink(hats.io.paths.pixel_catalog_file(str(out), p))
    (out / "hats.properties").unlink()
    resumed = scale.zeropoint_catalog(model_folder, hats_dir, out, scheduler=client, dropout=False, progress=False)
    assert sorted(resumed["computed"]) == sorted(f"Norder={p.order}/Dir={p.dir}/Npix={p.pixel}" for p in pixels[:2])
    assert resumed["complete"] and resumed["rows"] == N_HATS and not (out / RUN_FILE).exists()
    got = lsdb.open_catalog(str(out)).compute()
    assert len(got) == N_HATS and got["source_id"].is_unique  # every row exactly once
    np.testing.assert_array_equal(np.sort(got["source_id"].to_numpy()), np.sort(source.compute()["source_id"].to_numpy()))


# ------------------------------------------------------------------ faults
def _flaky_frame(mock_gaia, flag_dir, fail_on, n_parts=6, fail_times=1):
    """A Dask DataFrame whose partition ``fail_on`` fails to load ``fail_times`` times (a transient I/O error)."""
    chunks = np.array_split(np.arange(60_000), n_parts)
    data = [mock_gaia.iloc[c].reset_index(drop=True) for c in chunks]

    def load_part(i):
        flag = os.path.join(flag_dir, f"failed-{i}")
        if i == fail_on:
            count = len(os.listdir(flag_dir)) if os.path.isdir(flag_dir) else 0
            if count < fail_times:
                with open(f"{flag}-{count}", "w"):
                    pass
                raise OSError(f"transient read error on partition {i}")
        return data[i]

    os.makedirs(flag_dir, exist_ok=True)
    return dd.from_map(load_part, list(range(n_parts)), meta=data[0].iloc[:0]), data


def test_failed_partition_is_retried(net, model_folder, mock_gaia, client, tmp_path):
    frame, data = _flaky_frame(mock_gaia, str(tmp_path / "flags"), fail_on=3)
    out = tmp_path / "zp"
    summary = scale.zeropoint_catalog(model_folder, frame, out, scheduler=client, dropout=False, retries=1,
                                      progress=False)
    assert os.listdir(tmp_path / "flags") == ["failed-3-0"]  # it did fail once...
    assert summary["complete"] and summary["rows"] == 60_000  # ...and Dask's retry finished it
    got = pd.read_parquet(out / "part.00003.parquet")
    assert_same_numbers(got["zeropoint"], _expected_zeropoint(net, data[3])[0])


def test_kill_and_resume(model_folder, net, mock_gaia, client, tmp_path):
    frame, data = _flaky_frame(mock_gaia, str(tmp_path / "flags"), fail_on=2)
    out = tmp_path / "zp"
    with pytest.raises(scale.PartitionFailure, match="part.00002") as info:
        scale.zeropoint_catalog(model_folder, frame, out, scheduler=client, dropout=False, retries=0, progress=False)
    assert info.value.failed.keys() == {"part.00002"}
    manifest = scale.read_manifest(out)
    assert not manifest["complete"] and sorted(manifest["partitions"]) == [f"part.{i:05d}" for i in (0, 1, 3, 4, 5)]
    assert manifest["rows"] == 50_000 and "part.00002" in manifest["failed"]
    assert not (out / "part.00002.parquet").exists()
    with pytest.raises(scale.IncompleteOutputError, match="5 of 6"):
        scale.read_manifest(out, require_complete=True)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out) if p.endswith(".parquet")}

    summary = scale.zeropoint_catalog(model_folder, frame, out, scheduler=client, dropout=False, retries=0,
                                      progress=False)
    assert summary["computed"] == ["part.00002"] and summary["skipped"] == 5 and summary["complete"]
    assert summary["rows_computed"] == len(data[2])
    assert {p: os.stat(out / p).st_mtime_ns for p in mtimes} == mtimes  # nothing rewritten
    manifest = scale.read_manifest(out, require_complete=True)
    assert manifest["rows"] == 60_000 and "failed" not in manifest
    assert [manifest["partitions"][f"part.{i:05d}"]["rows"] for i in range(6)] == [len(d) for d in data]
    got = pd.read_parquet(out)
    np.testing.assert_array_equal(got["source_id"].to_numpy(), pd.concat(data)["source_id"].to_numpy())
    assert_same_numbers(got["zeropoint"], _expected_zeropoint(net, pd.concat(data))[0])


def test_stop_after_k_partitions_then_resume(model_folder, parquet_dir, client, tmp_path):
    out = tmp_path / "zp"
    first = scale.zeropoint_catalog(model_folder, parquet_dir, out, scheduler=client, dropout=False,
                                    max_partitions=3, progress=False)
    assert len(first["computed"]) == 3 and not first["complete"]
    assert scale.read_manifest(out)["rows"] == first["rows"] == 3 * N_ROWS // N_FILES
    # a killed run can leave a renamed partition file the manifest does not list yet: it is adopted, not redone
    manifest = scale.read_manifest(out)
    dropped = first["computed"][0]
    del manifest["partitions"][dropped]
    with open(out / scale.MANIFEST_NAME, "w") as f:
        json.dump(manifest, f)
    # and a half-written temporary file is never taken for a partition
    (out / ".part.00007.abc.partial.parquet").write_bytes(b"PAR1 truncated")
    second = scale.zeropoint_catalog(model_folder, parquet_dir, out, scheduler=client, dropout=False,
                                     progress=False)
    assert second["skipped"] == 3 and sorted(second["computed"] + first["computed"]) == \
        [f"part.{i:05d}" for i in range(N_FILES)]
    assert second["complete"] and scale.read_manifest(out, require_complete=True)["rows"] == N_ROWS


def test_refuses_other_runs_output(model_folder, parquet_dir, client, tmp_path):
    out = tmp_path / "zp"
    scale.zeropoint_catalog(model_folder, parquet_dir, out, scheduler=client, dropout=False, max_partitions=1,
                            progress=False)
    with pytest.raises(FileExistsError, match="another run"):
        scale.zeropoint_catalog(model_folder, parquet_dir, out, scheduler=client, dropout=True, mc_num=3,
                                max_partitions=1, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an astronn_gaiacal output"):
        scale.zeropoint_catalog(model_folder, parquet_dir, foreign, scheduler=client, progress=False)


def test_bad_inputs(model_folder, mock_gaia, tmp_path):
    frame = dd.from_pandas(mock_gaia.iloc[:100].drop(columns="teff"), npartitions=1)
    with pytest.raises(KeyError, match="teff"):
        scale.add_zeropoint(frame, model_folder)
    frame = dd.from_pandas(mock_gaia.iloc[:100], npartitions=1)
    with pytest.raises(ValueError, match="mc_num"):
        scale.add_zeropoint(frame, model_folder, mc_num=0)
    with pytest.raises(KeyError, match="feature_ranges lacks"):
        scale.add_zeropoint(frame, model_folder, feature_ranges={"teff": (4000, 5000)})
    with pytest.raises(FileNotFoundError):
        scale.add_zeropoint(frame, tmp_path / "no_model")
    with pytest.raises(TypeError, match="dask DataFrame"):
        scale.add_zeropoint(mock_gaia, model_folder)
    with pytest.raises(FileNotFoundError, match="no spectra partitions"):
        scale.predict_partitioned(model_folder, str(tmp_path), tmp_path / "out")


def test_explicit_feature_ranges_set_the_flag(model_folder, mock_gaia, client):
    sub = mock_gaia.iloc[:5000]
    ranges = {"phot_g_mean_mag": (-np.inf, np.inf), "bp_rp": (-np.inf, np.inf), "teff": (4500.0, 4600.0)}
    got = scale.add_zeropoint(dd.from_pandas(sub, npartitions=2), model_folder, dropout=False,
                              feature_ranges=ranges).compute()
    np.testing.assert_array_equal(got["zeropoint_out_of_range"].to_numpy(),
                                  ((sub["teff"] < 4500) | (sub["teff"] > 4600)).to_numpy())


# ------------------------------------------------------------------ distances
@pytest.fixture(scope="module")
def spectra_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spectra")
    for k, n in enumerate((300, 250, 320)):
        d = toy_survey(n, seed=10 + k, n_pixels=N_PIX)
        Dataset(spectra=d["spectra"],
                columns={"mag": d["mag"], "parallax": d["parallax"], "parallax_error": d["parallax_error"],
                         **d["features"], "apogee_id": np.array([f"s{k}_{i}" for i in range(n)])},
                units={"parallax": "mas", "parallax_error": "mas", "teff": "K"},
                attrs={"band": "Ks", "gaia_release": "dr2"}).write(str(folder / f"spec-{k}.h5"))
    return str(folder)


def _expected_catalogue(net, path, dropout, seed=None, key=None, mc_num=1):
    from astronn_gaiacal.pipeline import catalogue_for

    ds = read_dataset(path)
    if dropout:
        keras.utils.set_random_seed(scale.partition_seed(seed, key))
        return catalogue_for(net, ds, mc_num=mc_num).to_pandas(index=False)
    with dropout_disabled(net.keras_model_predict), dropout_disabled(net.offset_model):
        return catalogue_for(net, ds, mc_num=1).to_pandas(index=False)


def test_predict_partitioned_streams_and_matches(net, model_folder, spectra_files, client, tmp_path):
    files = sorted(os.listdir(spectra_files))
    # dropout off: chunked reading (64 spectra at a time) gives exactly the whole-file result
    out = tmp_path / "dist"
    summary = scale.predict_partitioned(model_folder, spectra_files, out, scheduler=client, dropout=False,
                                        chunk_rows=64, progress=False)
    assert summary["complete"] and summary["rows"] == 870 and summary["n_partitions"] == 3
    manifest = scale.read_manifest(out, require_complete=True)
    for k, name in enumerate(files):
        got = pd.read_parquet(out / f"part.{k:05d}.parquet")
        want = _expected_catalogue(net, os.path.join(spectra_files, name), dropout=False)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
        np.testing.assert_array_equal(got["apogee_id"].to_numpy(), want["apogee_id"].to_numpy())
        for col in ("fakemag", "dist", "dist_error", "nn_parallax", "zeropoint"):
            # float32 rounding scales with the column's magnitude, not with each value (zero-points cross 0)
            w = want[col].to_numpy()
            np.testing.assert_allclose(got[col].to_numpy(), w, rtol=1e-6, atol=1e-6 * np.abs(w).max())
        assert manifest["partitions"][f"part.{k:05d}"]["units"]["dist"] == "pc"
    # MC dropout, seeded per partition: identical to the in-process model with the same seed
    out = tmp_path / "dist_mc"
    scale.predict_partitioned(model_folder, spectra_files, out, scheduler=client, mc_num=8, seed=3,
                              chunk_rows=10_000, progress=False)
    for k, name in enumerate(files):
        got = pd.read_parquet(out / f"part.{k:05d}.parquet")
        want = _expected_catalogue(net, os.path.join(spectra_files, name), dropout=True, seed=3,
                                   key=f"part.{k:05d}", mc_num=8)
        assert_same_numbers(got["fakemag"], want["fakemag"])
        assert_same_numbers(got["fakemag_error"], want["fakemag_error"])


# ------------------------------------------------------------------ command line
def test_cli_zeropoint_catalog_and_predict_partitioned(net, model_folder, parquet_dir, spectra_files, client,
                                                       tmp_path, capsys):
    from astronn_gaiacal.cli import main

    address = client.scheduler.address
    out = tmp_path / "zp"
    code = main(["zeropoint", model_folder, "--catalog", parquet_dir, "--out", str(out), "--scheduler", address,
                 "--no-dropout", "--max-partitions", "2", "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0 and summary["computed"] == 2 and not summary["complete"]
    assert "zeropoint_error is NaN" in captured.err  # the deterministic pass is flagged
    code = main(["zeropoint", model_folder, "--catalog", parquet_dir, "--out", str(out), "--scheduler", address,
                 "--no-dropout", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["computed"] == N_FILES - 2 and summary["skipped"] == 2 and summary["complete"]
    assert summary["rows"] == N_ROWS
    code = main(["predict", model_folder, spectra_files, "--partitioned", "--out", str(tmp_path / "dist"),
                 "--scheduler", address, "--no-dropout", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["complete"] and summary["rows"] == 870
    parts = pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "dist").glob("part.*.parquet"))])
    assert len(parts) == 870 and not is_missing(parts["dist"].to_numpy()).any()
    assert is_missing(parts["dist_error"].to_numpy()).all()  # one deterministic pass: no spread measured, not 0
    # bad combinations are one-line usage errors
    assert main(["zeropoint", model_folder, "table.fits", "--catalog", parquet_dir, "--out", str(out)]) == 2
    assert main(["zeropoint", model_folder, "--catalog", parquet_dir]) == 2
    assert main(["zeropoint", model_folder, "--catalog", str(tmp_path / "none.parquet"), "--out",
                 str(tmp_path / "o2"), "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert "not both" in err and "needs --out" in err and "no such catalogue" in err
    no_teff = tmp_path / "no_teff"
    no_teff.mkdir()
    pd.read_parquet(parquet_dir).head(100).drop(columns=["teff"]).to_parquet(no_teff / "a.parquet")
    assert main(["zeropoint", model_folder, "--catalog", str(no_teff), "--out", str(tmp_path / "o3"),
                 "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert "lacks offset feature column(s) ['teff']" in err and "Traceback" not in err
    assert not (tmp_path / "o3").exists()


def test_calibrated_trend_at_catalogue_scale(model_folder, mock_gaia, client, tmp_path):
    """A model with a calibrated trend: the catalogue's zero-points are that trend's, as in process."""
    from astronn_gaiacal.zeropoint.calibrated import TREND_ESTIMATE, CalibratedZeropoint
    from astronn_gaiacal.zeropoint.trends import fit_zeropoint_trend

    rng = np.random.default_rng(3)
    n = 2000
    feats = {name: rng.uniform(*np.nanpercentile(mock_gaia[name], [5, 95]), n) for name in FEATURES}
    model_plx = rng.uniform(0.2, 2.0, n)
    err = rng.uniform(0.02, 0.05, n)
    plx = model_plx - 0.04 - 0.005 * (feats["phot_g_mean_mag"] - 15) + rng.normal(0, err)
    trend = fit_zeropoint_trend(plx, err, model_plx, feats, names=FEATURES, likelihood="gaussian")
    folder = tmp_path / "calibrated"
    m = load(model_folder)
    m.zeropoint_calibration = CalibratedZeropoint(TREND_ESTIMATE, trend)
    m.save(str(folder))
    sub = mock_gaia.iloc[:20_000]
    out = tmp_path / "zp_cal"
    summary = scale.zeropoint_catalog(str(folder), dd.from_pandas(sub, npartitions=2), out, scheduler=client,
                                      progress=False)
    assert summary["complete"]
    got = pd.read_parquet(out)
    x = {name: sub[name].to_numpy(dtype=float, na_value=np.nan) for name in FEATURES}
    design = [np.ones(len(sub))]
    for name, pivot in zip(trend.features, trend.pivots):
        design += [x[name] - pivot, (x[name] - pivot) ** 2]
    design = np.stack(design, axis=1)  # NaN rows (a missing feature) stay NaN
    want = design @ trend.coefficients / 1000
    want_err = np.sqrt(np.einsum("ij,jk,ik->i", design, trend.covariance, design)) / 1000
    np.testing.assert_allclose(got["zeropoint"].to_numpy(), want, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(got["zeropoint_error"].to_numpy(), want_err, rtol=1e-10, equal_nan=True)
    # evaluated from the folder's JSON: no worker loaded the network
    from astronn_gaiacal.distributed.workers import model_loads

    loads = client.run(model_loads)
    assert not any(str(folder) in path for worker in loads.values() for path in worker)
    # estimate='learned' runs the network: the same numbers as the uncalibrated folder with the same weights
    learned = scale.zeropoint_catalog(str(folder), dd.from_pandas(sub, npartitions=2), tmp_path / "zp_learned",
                                      scheduler=client, progress=False, estimate="learned")
    plain = scale.zeropoint_catalog(model_folder, dd.from_pandas(sub, npartitions=2), tmp_path / "zp_plain",
                                    scheduler=client, progress=False)
    assert learned["complete"] and plain["complete"]
    a, b = pd.read_parquet(tmp_path / "zp_learned"), pd.read_parquet(tmp_path / "zp_plain")
    np.testing.assert_allclose(a["zeropoint"].to_numpy(), b["zeropoint"].to_numpy(), rtol=1e-6, equal_nan=True)
    assert np.nanmax(np.abs(a["zeropoint"].to_numpy() - want)) > 1e-4  # not the trend
    with pytest.raises(ValueError, match="estimate"):
        scale.add_zeropoint(dd.from_pandas(sub, npartitions=2), str(folder), estimate="refit")


def test_calibrated_partition_needs_no_tensorflow(model_folder, tmp_path):
    """The default catalogue path evaluates the stored trend without importing TensorFlow (a fresh process)."""
    import subprocess
    import sys

    from astronn_gaiacal.zeropoint.calibrated import TREND_ESTIMATE, CalibratedZeropoint
    from astronn_gaiacal.zeropoint.trends import ZeropointTrendFit

    m = load(model_folder)
    ranges = {name: tuple(m.feature_ranges[name]) for name in FEATURES}
    trend = ZeropointTrendFit(FEATURES, (15.0, 1.5, 4500.0), ranges, np.array([-40.0, -5.0, 0.5, 3.0, 0.0, 1e-3, 0.0]),
                              np.eye(7), 1.0, 0.0, 0.05, 0.0, 100)
    m.zeropoint_calibration = CalibratedZeropoint(TREND_ESTIMATE, trend)
    folder = m.save(str(tmp_path / "cal"))
    code = f"""
import sys
import pandas as pd
from astronn_gaiacal.distributed.workers import model_info
from astronn_gaiacal.distributed.zeropoint import _zeropoint_frame
info = model_info({str(folder)!r})
df = pd.DataFrame({{"phot_g_mean_mag": [16.0, 14.0], "bp_rp": [1.5, 2.5], "teff": [4500.0, 5000.0]}})
out = _zeropoint_frame(df, info["folder"], info["feature_ranges"], 100, True, 0, "part.00000", 4096,
                       info["zeropoint_calibration"])
print(list(out["zeropoint"] * 1000), "tensorflow.python" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    values, tf_loaded = proc.stdout.strip().rsplit(" ", 1)
    assert tf_loaded == "False"
    # c + b_G dG + a_G dG^2 + b_c dc + ... by hand: star 1 dG = 1, the others 0; star 2 dG = -1, dc = 1, dT = 500
    assert np.allclose(eval(values), [-40 - 5 + 0.5, -40 + 5 + 0.5 + 3.0 + 0.5])


def test_cli_refuses_max_partitions_for_hats_input(model_folder, hats_dir, tmp_path, capsys):
    from astronn_gaiacal.cli import main

    code = main(["zeropoint", model_folder, "--catalog", str(hats_dir), "--out", str(tmp_path / "o"),
                 "--max-partitions", "1"])
    assert code == 2 and "--max-partitions" in capsys.readouterr().err and not (tmp_path / "o").exists()
