"""Gaia cross-match: the real pyvo TAPService/AsyncTAPJob code against a fake archive, and the local path."""
import inspect
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.utils.exceptions import AstropyUserWarning

import astronn_gaiacal  # noqa: F401  (compatibility layer first)
from astronn_gaiacal.sources import xmatch
from astronn_gaiacal.sources.xmatch import archive as xmatch_archive
from astronn_gaiacal.sources.xmatch import (
    GaiaArchiveError,
    GaiaTruncatedResultError,
    add_gaia_columns,
    crossmatch,
    crossmatch_local,
    gaia_archive,
    gaia_columns,
)
from gaia_fake import arcsec_offset, fake_gaia, make_sky, recorded_rows

# Input rows and where their Gaia sources sit (arcsec east, north); None: no source nearby.
OFFSETS = [
    [(0.6, 0.8), (1.8, 0.0)],  # 1.0" and 1.8": nearest is 1.0"
    [(0.0, 0.3)],  # 0.3"
    [(2.5, 0.0)],  # outside 2"
    [(0.0, -1.99)],  # just inside
    [(2.0005, 0.0)],  # just outside: inside the server's 1 mas slack, cut by the client
    [(-0.5, 0.0)],  # 0.5"
    [],  # nothing
]
EXPECTED_SEP = [1.0, 0.3, None, 1.99, None, 0.5, None]


@pytest.fixture(scope="module")
def scene():
    ra_in = np.array([10.0, 45.0, 80.0, 120.0, 200.0, 250.0, 300.0])
    dec_in = np.array([5.0, -30.0, 60.0, 0.0, -80.0, 20.0, 40.0])
    src_ra, src_dec, owner, seps = [], [], [], []
    for i, offsets in enumerate(OFFSETS):
        for east, north in offsets:
            r, d = arcsec_offset(ra_in[i], dec_in[i], east, north)
            src_ra.append(float(r))
            src_dec.append(float(d))
            owner.append(i)
            seps.append(np.hypot(east, north))
    sky = make_sky(np.array(src_ra), np.array(src_dec))
    owner, seps = np.array(owner), np.array(seps)
    expected_id = np.full(len(ra_in), -1, np.int64)
    for i in range(len(ra_in)):
        near = np.flatnonzero((owner == i) & (seps <= 2.0))
        if len(near):
            expected_id[i] = sky["source_id"][near[np.argmin(seps[near])]]
    return Table({"ra": ra_in, "dec": dec_in}), sky, expected_id


def run(inputs, sky, **kwargs):
    gaia, fake = fake_gaia(sky)
    kwargs.setdefault("cache", False)
    kwargs.setdefault("progress", False)
    return crossmatch(inputs, archive=gaia, **kwargs), fake


def check_matches(result, expected_id, sky):
    got = result["source_id"].filled(-1)
    np.testing.assert_array_equal(got, expected_id)
    for i, sep in enumerate(EXPECTED_SEP):
        if sep is None:
            assert result["xmatch_sep"].mask[i]
            assert all(result[name].mask[i] for name in result.colnames)
        else:
            assert result["xmatch_sep"][i] == pytest.approx(sep, abs=1e-6)
            row = sky[np.flatnonzero(sky["source_id"] == expected_id[i])[0]]
            # the real DR3 values of the recorded template rows come through unchanged
            assert result["parallax"][i] == pytest.approx(float(row["parallax"]), rel=1e-12)
            assert result["phot_g_mean_mag"][i] == pytest.approx(float(row["phot_g_mean_mag"]), rel=1e-6)


# --------------------------------------------------------------------------------------------- ADQL


@pytest.mark.parametrize("release", ["dr2", "edr3", "dr3"])
@pytest.mark.parametrize("with_2mass", [False, True])
def test_adql_tables_and_columns_per_release(scene, release, with_2mass):
    inputs, sky, expected_id = scene
    result, fake = run(inputs, sky, release=release, with_2mass=with_2mass, radius=1.5 * u.arcsec)
    query = fake.jobs[0]["query"]
    schema = {"dr2": "gaiadr2", "edr3": "gaiaedr3", "dr3": "gaiadr3"}[release]
    assert f"LEFT OUTER JOIN {schema}.gaia_source AS g ON 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), " \
           "CIRCLE('ICRS', u.xm_ra, u.xm_dec, " in query
    radius_sent = float(query.split("u.xm_dec, ")[1].split(")")[0])
    assert radius_sent * 3600 == pytest.approx(1.5 + 0.001, abs=1e-9)  # 1 mas slack, exact cut client-side
    assert "FROM tap_upload.xm_input AS u" in query and query.rstrip().endswith("ORDER BY u.xm_row")
    for column in ("source_id", "parallax", "parallax_error", "pmra", "pmdec_error", "phot_g_mean_mag", "bp_rp",
                   "visibility_periods_used", "ref_epoch"):
        assert f"g.{column}" in query
    zp = ("nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat", "astrometric_params_solved")
    if release == "dr2":
        assert "r.ruwe" in query and "LEFT OUTER JOIN gaiadr2.ruwe AS r ON r.source_id = g.source_id" in query
        assert not any(f"g.{c}" in query for c in zp)
    else:
        assert "g.ruwe" in query and "gaiadr2.ruwe" not in query
        assert all(f"g.{c}" in query for c in zp)
    if with_2mass:
        neighbour = "gaiadr2.tmass_best_neighbour" if release == "dr2" else f"{schema}.tmass_psc_xsc_best_neighbour"
        assert f"LEFT OUTER JOIN {neighbour} AS xm ON xm.source_id = g.source_id" in query
        assert "LEFT OUTER JOIN gaiadr1.tmass_original_valid AS tm ON" in query
        assert "tm.ks_m" in query and "tm.ks_msigcom" in query and "tm.ph_qual" in query
        # 2MASS Ks of the matched sources come through
        hit = ~result["source_id"].mask
        ks = {int(s): float(k) for s, k in zip(sky["source_id"], sky["ks_m"])}
        np.testing.assert_allclose(result["ks_m"][hit], [ks[int(s)] for s in result["source_id"][hit]], rtol=1e-6)
        assert set(result["ph_qual"][hit]) == {"AAA"}
    else:
        assert "tmass" not in query and "ks_m" not in result.colnames
    assert result.colnames == gaia_columns(release, with_2mass)
    assert result.meta["gaia_release"] == release and result.meta["xmatch_radius_arcsec"] == 1.5
    # with 1.5": rows 0, 1, 5 match (1.0", 0.3", 0.5"); 3 (1.99") no longer does
    np.testing.assert_array_equal(~result["source_id"].mask, [True, True, False, False, False, True, False])


def test_upload_holds_the_input_and_a_sentinel(scene):
    inputs, sky, _ = scene
    _, fake = run(inputs, sky, release="dr3", chunk_size=4)
    first, second = (job["upload"] for job in fake.jobs)
    assert first.colnames == ["xm_row", "xm_ra", "xm_dec"]
    np.testing.assert_array_equal(first["xm_row"][:-1], [0, 1, 2, 3])
    np.testing.assert_array_equal(second["xm_row"][:-1], [4, 5, 6])
    np.testing.assert_allclose(first["xm_ra"][:-1], inputs["ra"][:4])
    assert first["xm_row"][-1] == second["xm_row"][-1] > 10**18  # the sentinel sorts last
    # astroquery's launch_job_async multipart form: async job, ADQL, upload named like the table
    fields = fake.jobs[0]["fields"]
    assert fields["UPLOAD"] == b"xm_input,param:xm_input" and fields["LANG"] == b"ADQL"
    # BINARY2, not TABLEDATA: astropy's C TABLEDATA writer overruns its buffer by one character when a
    # row is exactly a power of two long (heap corruption seen here as segfaults)
    assert b"<BINARY2>" in fields["xm_input"] and b"<TABLEDATA>" not in fields["xm_input"]


# --------------------------------------------------------------------------------------------- results


@pytest.mark.parametrize("chunk_size,n_jobs", [(1, 7), (3, 3), (7, 1), (100, 1)])
def test_chunking_keeps_all_rows_in_order(scene, chunk_size, n_jobs):
    inputs, sky, expected_id = scene
    result, fake = run(inputs, sky, release="dr3", chunk_size=chunk_size)
    assert len(fake.jobs) == n_jobs and len(result) == len(inputs)
    check_matches(result, expected_id, sky)


def test_shuffled_input_stays_aligned(scene, rng):
    inputs, sky, expected_id = scene
    order = rng.permutation(len(inputs))
    result, _ = run(inputs[order], sky, release="dr3", chunk_size=2)
    np.testing.assert_array_equal(result["source_id"].filled(-1), expected_id[order])


def test_unmatched_rows_are_masked_and_types_fixed(scene):
    inputs, sky, expected_id = scene
    result, _ = run(inputs, sky, release="dr3", with_2mass=True)
    assert result["source_id"].dtype == np.int64 and result["visibility_periods_used"].dtype == np.int32
    assert result["parallax"].unit == u.mas and result["pmra"].unit == u.mas / u.yr
    assert result["xmatch_sep"].unit == u.arcsec
    unmatched = expected_id < 0
    for name in result.colnames:
        np.testing.assert_array_equal(result[name].mask[unmatched], True)
    assert result.meta["n_matched"] == int(np.sum(~unmatched))


def test_skycoord_and_quantity_input(scene):
    inputs, sky, expected_id = scene
    coords = SkyCoord(inputs["ra"] * u.deg, inputs["dec"] * u.deg)
    result, _ = run(coords, sky, release="edr3")
    np.testing.assert_array_equal(result["source_id"].filled(-1), expected_id)
    qtable = Table({"RA": (inputs["ra"] * u.deg).to(u.rad), "DEC": inputs["dec"] * u.deg})
    result, _ = run(qtable, sky, release="edr3")  # column names found case-insensitively, radians converted
    np.testing.assert_array_equal(result["source_id"].filled(-1), expected_id)


def test_missing_positions_are_unmatched_with_a_warning(scene):
    inputs, sky, expected_id = scene
    table = Table(inputs, masked=True)
    table["ra"][1] = np.nan
    table["dec"].mask[3] = True
    with pytest.warns(AstropyUserWarning, match="2 of 7 rows have no position"):
        result, fake = run(table, sky, release="dr3")
    assert len(fake.jobs[0]["upload"]) == 5 + 1
    expected = expected_id.copy()
    expected[[1, 3]] = -1
    np.testing.assert_array_equal(result["source_id"].filled(-1), expected)


def test_by_source_id(scene):
    inputs, sky, _ = scene
    ids = np.array([sky["source_id"][2], 999999, 0, sky["source_id"][0], sky["source_id"][2]], dtype=np.int64)
    with pytest.warns(AstropyUserWarning, match="1 of 5 rows have no source_id"):
        result, fake = run(Table({"source_id": ids}), sky, release="dr3", by="source_id", chunk_size=2)
    query = fake.jobs[0]["query"]
    assert "LEFT OUTER JOIN gaiadr3.gaia_source AS g ON g.source_id = u.xm_source_id" in query
    assert "CONTAINS" not in query
    assert "xmatch_sep" not in result.colnames and result.colnames == gaia_columns("dr3", by="source_id")
    np.testing.assert_array_equal(result["source_id"].filled(-1), [ids[0], -1, -1, ids[3], ids[4]])
    np.testing.assert_allclose(result["ra"][0], sky["ra"][2])
    # "Gaia DR3 <id>" strings work too; float ids would have lost digits
    names = Table({"gaia": [f"Gaia DR3 {i}" for i in ids[[0, 3]]]})
    result, _ = run(names, sky, release="dr3", by="source_id", source_id="gaia")
    np.testing.assert_array_equal(result["source_id"], ids[[0, 3]])
    with pytest.raises(TypeError, match="'source_id' is floating point"):
        run(Table({"source_id": ids.astype(float)}), sky, release="dr3", by="source_id")


def test_epoch_moves_gaia_with_its_proper_motion():
    # a fast star: 5" from the input at Gaia's epoch, 0.5" at the input epoch 2000.0;
    # a 2-parameter source (no proper motion) 1" from a second input row
    ra0, dec0 = 150.0, 30.0
    pmra, pmdec = 300.0, 0.0  # mas/yr
    dt = 2016.0 - 2000.0
    gra, gdec = arcsec_offset(ra0, dec0, 0.5 + pmra * dt / 1000.0, 0.0)
    ra1, dec1 = 160.0, -10.0
    hra, hdec = arcsec_offset(ra1, dec1, 0.0, 1.0)
    sky = make_sky(np.array([gra, hra]), np.array([gdec, hdec]), pmra=np.ma.masked_invalid([pmra, np.nan]),
                   pmdec=np.ma.masked_invalid([pmdec, np.nan]))
    inputs = Table({"ra": [ra0, ra1], "dec": [dec0, dec1], "obs": [2000.0, 2000.0]})
    plain, _ = run(inputs, sky, release="dr3")
    assert plain["source_id"].mask.tolist() == [True, False]  # 4.8" away at J2016
    moved, fake = run(inputs, sky, release="dr3", epoch="obs")
    query = fake.jobs[0]["query"]
    assert "DISTANCE(POINT('ICRS', u.xm_ra, u.xm_dec), POINT('ICRS', g.ra + g.pmra * (u.xm_epoch - g.ref_epoch)" \
        in query and "g.pmra IS NULL" in query
    search = float(query.split("u.xm_dec, ")[1].split(")")[0]) * 3600
    assert search == pytest.approx(2.0 + 0.001 + 1.0 * 16.0, rel=1e-9)  # radius + max_pm * |dt|
    assert fake.jobs[0]["upload"].colnames == ["xm_row", "xm_ra", "xm_dec", "xm_epoch"]
    np.testing.assert_array_equal(moved["source_id"], sky["source_id"])
    # the linear propagation is good to ~1e-4" over 16 yr at 300 mas/yr
    np.testing.assert_allclose(moved["xmatch_sep"], [0.5, 1.0], atol=1e-3)
    # a Time epoch gives the same answer, and so does the local path
    by_time, _ = run(inputs, sky, release="dr3", epoch=Time(2000.0, format="jyear"))
    np.testing.assert_allclose(by_time["xmatch_sep"], moved["xmatch_sep"], rtol=1e-12)
    local = crossmatch_local(inputs, sky, release="dr3", epoch="obs")
    np.testing.assert_array_equal(local["source_id"], moved["source_id"])
    np.testing.assert_allclose(local["xmatch_sep"], moved["xmatch_sep"], rtol=1e-12)
    with pytest.raises(ValueError, match="look like MJD"):
        run(inputs, sky, epoch=51544.0)


# --------------------------------------------------------------------------------------------- failures


def test_truncated_response_raises(scene, tmp_path):
    inputs, sky, _ = scene
    gaia, fake = fake_gaia(sky)
    fake.truncate = 4  # a row limit cutting the answer
    with pytest.raises(GaiaTruncatedResultError, match=r"chunk 1 of 1 .*truncated the result"):
        crossmatch(inputs, archive=gaia, cache=tmp_path, progress=False, retries=3)
    assert len(fake.jobs) == 1  # not retried: it would be cut again
    assert os.listdir(tmp_path) == [] if os.path.exists(tmp_path) else True
    # a cut exactly after the last real row (sentinel lost) is caught too
    fake.truncate = 8  # 8 real rows for 7 inputs (row 0 has two candidates)
    with pytest.raises(GaiaTruncatedResultError):
        crossmatch(inputs, archive=gaia, cache=False, progress=False)


def test_http_500_retries_then_names_the_chunk_and_resumes_from_cache(scene, tmp_path, monkeypatch):
    inputs, sky, expected_id = scene
    waits = []
    monkeypatch.setattr(xmatch_archive, "_sleep", waits.append)
    gaia, fake = fake_gaia(sky)
    fake.fail = lambda upload: 500 if 3 in upload["xm_row"] else None  # chunk 2 of 3 (rows 3-5)
    with pytest.raises(GaiaArchiveError) as info:
        crossmatch(inputs, archive=gaia, cache=tmp_path, chunk_size=3, retries=2, backoff=0.5, progress=False)
    err = info.value
    assert "chunk 2 of 3 (input rows 3-5)" in str(err) and "3 attempts" in str(err)
    assert "\n" not in str(err) and err.__cause__ is None and err.__suppress_context__
    assert err.chunk == 2 and err.n_chunks == 3 and err.rows == (3, 5) and err.attempts == 3
    assert err.completed == [1] and str(tmp_path) in str(err)
    assert waits == [0.5, 1.0]  # exponential backoff
    assert fake.posts == 1 + 3  # chunk 1 once, chunk 2 three times, chunk 3 never
    assert len(os.listdir(tmp_path)) == 1  # chunk 1 is cached
    np.testing.assert_array_equal(err.partial["source_id"].filled(-1)[:3], expected_id[:3])
    assert err.partial["source_id"].mask[3:].all()

    fake.fail = lambda upload: None  # the archive recovers
    result = crossmatch(inputs, archive=gaia, cache=tmp_path, chunk_size=3, progress=False)
    assert fake.posts == 4 + 2  # only chunks 2 and 3 were sent
    check_matches(result, expected_id, sky)
    assert len(os.listdir(tmp_path)) == 3

    class Silent(type(fake)):
        def send(self, *args, **kwargs):
            raise AssertionError("the cache should have answered")

    silent_archive, silent = fake_gaia(sky, Silent(sky))
    again = crossmatch(inputs, archive=silent_archive, cache=tmp_path, chunk_size=3, progress=False)
    assert silent.posts == 0
    for name in result.colnames:
        np.testing.assert_array_equal(again[name].mask, result[name].mask)
        np.testing.assert_array_equal(again[name].filled(0), result[name].filled(0))
    # a second run with the default archive=None uses the cache without contacting the archive
    assert crossmatch(inputs, cache=tmp_path, chunk_size=3, progress=False).meta["n_matched"] == 4


def test_interrupt_keeps_finished_chunks_and_no_partial_files(scene, tmp_path):
    inputs, sky, expected_id = scene
    gaia, fake = fake_gaia(sky)

    def interrupt(upload):
        if 4 in upload["xm_row"]:
            raise KeyboardInterrupt  # Ctrl-C while chunk 2 of 3 runs

    fake.fail = interrupt
    with pytest.raises(KeyboardInterrupt):
        crossmatch(inputs, archive=gaia, cache=tmp_path, chunk_size=4, progress=False)
    assert [f.endswith(".ecsv") and not f.startswith(".") for f in os.listdir(tmp_path)] == [True]
    fake.fail = lambda upload: None
    result = crossmatch(inputs, archive=gaia, cache=tmp_path, chunk_size=4, progress=False)
    assert len(fake.jobs) == 3  # chunk 1, the interrupted chunk 2, then only chunk 2 again
    check_matches(result, expected_id, sky)


def test_transient_error_is_retried(scene, monkeypatch):
    inputs, sky, expected_id = scene
    monkeypatch.setattr(xmatch_archive, "_sleep", lambda s: None)
    gaia, fake = fake_gaia(sky)
    calls = []
    fake.fail = lambda upload: 503 if not calls.append(1) and len(calls) == 1 else None
    result = crossmatch(inputs, archive=gaia, cache=False, progress=False)
    assert fake.posts == 2
    np.testing.assert_array_equal(result["source_id"].filled(-1), expected_id)


def test_failed_job_is_not_retried(scene):
    inputs, sky, _ = scene
    gaia, fake = fake_gaia(sky)
    fake.job_error = "Error while parsing the ADQL query"
    with pytest.raises(GaiaArchiveError, match="job failed: .*parsing the ADQL query.*chunk 1 of 1"):
        crossmatch(inputs, archive=gaia, cache=False, progress=False, retries=3)
    assert fake.posts == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_gives_one_line_error(scene):
    inputs, _, _ = scene
    archive = gaia_archive(f"http://127.0.0.1:{_free_port()}/", timeout=(2, 2))
    t0 = time.monotonic()
    with pytest.raises(GaiaArchiveError, match=r"^cannot reach the Gaia archive \(http://127.0.0.1:\d+/\): "
                                               r"ConnectionRefusedError.*\[chunk 1 of 1 .*2 attempts\]$"):
        crossmatch(inputs, archive=archive, cache=False, retries=1, backoff=0, progress=False)
    assert time.monotonic() - t0 < 5


def test_silent_server_times_out_instead_of_hanging(scene):
    inputs, _, _ = scene
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts connections (kernel backlog) and never answers
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        archive = gaia_archive(f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=(0.5, 0.5))
        t0 = time.monotonic()
        with pytest.raises(GaiaArchiveError, match="cannot reach the Gaia archive.*(timed out|TimeoutError)"):
            crossmatch(inputs, archive=archive, cache=False, retries=1, backoff=0, progress=False)
        assert time.monotonic() - t0 < 5
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_default_settings_bound_the_failure_time():
    # worst case with a black-holed archive: every attempt's connect, and the waits between them
    from astronn_gaiacal import conf

    defaults = inspect.signature(crossmatch).parameters
    assert defaults["timeout"].default is None and defaults["retries"].default is None  # conf's values
    connect, retries, backoff = conf.connect_timeout, conf.retries, defaults["backoff"].default
    worst = (retries + 1) * connect + backoff * (2**retries - 1)
    assert worst < 60


def _archive_resolves():
    try:
        socket.getaddrinfo("gea.esac.esa.int", 443)
        return True
    except OSError:
        return False


@pytest.mark.skipif(_archive_resolves(), reason="the Gaia archive is reachable here; this checks the offline failure")
def test_unreachable_archive_with_default_settings_fails_fast(scene, tmp_path, monkeypatch):
    inputs, _, _ = scene
    monkeypatch.setenv(xmatch.CACHE_ENV, str(tmp_path))
    t0 = time.monotonic()
    with pytest.raises(GaiaArchiveError) as info:
        crossmatch(inputs, release="dr3", progress=False)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert elapsed < 60
    assert "\n" not in message and message.startswith("cannot reach the Gaia archive (https://gea.esac.esa.int/)")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no raw socket traceback
    assert isinstance(info.value.cause, OSError) and info.value.attempts == 4


def test_importing_the_module_does_not_import_astroquery_gaia():
    code = "import astronn_gaiacal.sources.xmatch, sys; print('astroquery.gaia' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------- input checks


def test_bad_input_is_named(scene):
    inputs, sky, _ = scene
    with pytest.raises(KeyError, match="ra: column 'ra_icrs' not in the table"):
        crossmatch(inputs, ra="ra_icrs", cache=False)
    with pytest.raises(ValueError, match="release must be one of"):
        crossmatch(inputs, release="dr1")
    with pytest.raises(u.UnitTypeError, match="radius must be an angle"):
        crossmatch(inputs, radius=2 * u.s)
    with pytest.raises(ValueError, match="radius must be a positive"):
        crossmatch(inputs, radius=-1)
    with pytest.raises(ValueError, match="'dec' is outside"):
        crossmatch(Table({"ra": [1.0], "dec": [95.0]}))
    with pytest.raises(ValueError, match="by must be"):
        crossmatch(inputs, by="name")
    with pytest.raises(ValueError, match="chunk_size"):
        crossmatch(inputs, chunk_size=0)
    with pytest.raises(u.UnitTypeError, match="column 'ra' has unit s, not convertible to deg"):
        crossmatch(Table({"ra": [1.0] * u.s, "dec": [1.0] * u.deg}))


# --------------------------------------------------------------------------------------------- local


def boundary_sky(rng, n=200):
    """Random input stars, each with a Gaia source at a known separation around 2"."""
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    sep = rng.choice([0.2, 1.0, 1.9, 1.999, 2.001, 2.1, 3.0], n)
    angle = rng.uniform(0, 2 * np.pi, n)
    gra, gdec = arcsec_offset(ra, dec, sep * np.sin(angle), sep * np.cos(angle))
    return Table({"ra": ra, "dec": dec}), make_sky(gra, gdec), sep


def test_local_match_at_the_2_arcsec_boundary(rng):
    inputs, sky, sep = boundary_sky(rng)
    result = crossmatch_local(inputs, sky, release="dr3")
    inside = sep <= 2.0
    np.testing.assert_array_equal(~result["source_id"].mask, inside)
    np.testing.assert_array_equal(result["source_id"][inside], sky["source_id"][inside])
    np.testing.assert_allclose(result["xmatch_sep"][inside], sep[inside], atol=1e-7)
    np.testing.assert_allclose(result["ra"][inside], sky["ra"][inside], rtol=1e-15)
    # radius is honoured either way around the boundary
    tight = crossmatch_local(inputs, sky, release="dr3", radius=1.95 * u.arcsec)
    np.testing.assert_array_equal(~tight["source_id"].mask, sep <= 1.95)


def test_local_and_archive_give_the_same_table(rng):
    inputs, sky, sep = boundary_sky(rng, n=40)
    for release, with_2mass in (("dr2", True), ("dr3", False), ("edr3", True)):
        local = crossmatch_local(inputs, sky, release=release, with_2mass=with_2mass)
        remote, _ = run(inputs, sky, release=release, with_2mass=with_2mass, chunk_size=15)
        assert local.colnames == remote.colnames == gaia_columns(release, with_2mass)
        for name in local.colnames:
            assert local[name].dtype == remote[name].dtype, name
            assert local[name].unit == remote[name].unit, name
            np.testing.assert_array_equal(local[name].mask, remote[name].mask)
            if local[name].dtype.kind == "f":
                np.testing.assert_allclose(local[name].filled(0), remote[name].filled(0), rtol=1e-12, atol=1e-9)
            else:
                np.testing.assert_array_equal(local[name].filled(0), remote[name].filled(0))
    by_id = crossmatch_local(Table({"source_id": sky["source_id"][::-1]}), sky, release="dr3", by="source_id")
    np.testing.assert_array_equal(by_id["ra"], sky["ra"][::-1])


@pytest.mark.parametrize("suffix", [".fits", ".hdf5", ".parquet", ".ecsv"])
def test_local_gaia_file_formats(rng, tmp_path, suffix):
    inputs, sky, sep = boundary_sky(rng, n=30)
    path = str(tmp_path / f"gaia{suffix}")
    keep = gaia_columns("dr3", by="source_id")
    extract = Table(sky[keep])
    for name in extract.colnames:
        if hasattr(extract[name], "mask"):
            extract[name] = extract[name].filled(np.nan if extract[name].dtype.kind == "f" else 0)
    if suffix == ".hdf5":
        import h5py

        with h5py.File(path, "w") as f:  # a plain h5py extract, one dataset per column
            for name in keep:
                f[name] = np.asarray(extract[name])
            f["parallax"].attrs["unit"] = "mas"
    else:
        extract.write(path)
    result = crossmatch_local(inputs, path, release="dr3")
    np.testing.assert_array_equal(~result["source_id"].mask, sep <= 2.0)
    assert result.meta["xmatch_source"] == path
    assert result.colnames == gaia_columns("dr3")


def test_local_table_missing_columns_named(rng):
    inputs, sky, _ = boundary_sky(rng, n=5)
    sky.remove_columns(["ruwe", "bp_rp"])
    with pytest.raises(KeyError, match="local Gaia table .* lacks column\\(s\\) bp_rp, ruwe"):
        crossmatch_local(inputs, sky, release="dr3")  # DR3's gaia_source has ruwe; DR2's has none (tested elsewhere)
    dup = make_sky(np.array([1.0, 2.0]), np.array([0.0, 0.0]), source_id=np.array([5, 5]))
    with pytest.raises(ValueError, match="source_id is not unique"):
        crossmatch_local(Table({"source_id": [5]}), dup, by="source_id")


# --------------------------------------------------------------------------------------------- combining


def test_add_gaia_columns_prefixes_collisions(scene, tmp_path):
    inputs, sky, expected_id = scene
    result, _ = run(inputs, sky, release="dr3")
    both = add_gaia_columns(inputs, result)
    assert both.colnames[:2] == ["ra", "dec"] and "gaia_ra" in both.colnames and "parallax" in both.colnames
    np.testing.assert_array_equal(both["ra"], inputs["ra"])
    with pytest.raises(ValueError, match="has 7 rows"):
        add_gaia_columns(inputs[:3], result)
    png = xmatch.plot_crossmatch(result, str(tmp_path / "xm.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_recorded_rows_are_real_dr3():
    rows = recorded_rows()
    assert list(rows["source_id"]) == [4583627001381815936, 5348723816842275584]
    assert set(gaia_columns("dr3", by="source_id")) <= set(rows.colnames)


@pytest.mark.remote_data
@pytest.mark.parametrize("release", ["dr2", "dr3"])
def test_live_archive_apogee_stars(release, tmp_path):
    # two APOGEE DR17 stars (see tests/data/README.md of the reference data): 2MASS positions, J2000
    stars = Table({"ra": [297.2107083, 263.4784583], "dec": [50.0910833, -27.8845278]})
    result = crossmatch(stars, release, with_2mass=True, epoch=2000.0, cache=tmp_path, progress=False)
    assert not result["source_id"].mask.any()
    np.testing.assert_allclose(result["ks_m"], [10.522, 9.811], atol=0.002)
    if release == "dr2":  # astroNN's gaiadr2_apogeedr14_parallax values
        np.testing.assert_allclose(result["parallax"], [6.0670, 0.1428], atol=2e-4)
        np.testing.assert_allclose(result["phot_g_mean_mag"], [12.610, 16.470], atol=2e-3)
