"""Catalogue runs resume across processes: ``zeropoint MODEL --catalog C --out D`` run as real commands.

The second identical command writes nothing and returns at once; a changed option is refused naming
``--overwrite``; a run killed mid-way (its whole process group, cluster workers included) is completed by
the rerun with every row present exactly once.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("distributed")

from astronn_gaiacal.models import DenseGaiaBNN  # noqa: E402

from _toy import N_PIX, toy_survey  # noqa: E402


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A multivariate DenseGaiaBNN (a built-in class, so the command's workers can load it), one epoch."""
    d = toy_survey(300, seed=1, n_pixels=N_PIX)
    net = DenseGaiaBNN(hidden=(16,), offset="multivariate")
    net.max_epochs, net.verbose, net.batch_size = 1, 0, 64
    net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"], offset_features=d["features"])
    return net.save(str(tmp_path_factory.mktemp("model") / "dense_mv"))


def _catalogue(folder, n_files, rows):
    rng = np.random.default_rng(7)
    folder.mkdir()
    for i in range(n_files):
        pd.DataFrame({"source_id": np.arange(i * rows, (i + 1) * rows), "phot_g_mean_mag": rng.uniform(9, 17, rows),
                      "bp_rp": rng.uniform(1, 2.5, rows), "teff": rng.uniform(4000, 5200, rows)}).to_parquet(
            folder / f"stars_{i:02d}.parquet")
    return folder


def _command(model, catalogue, out, *extra):
    return [sys.executable, "-m", "astronn_gaiacal", "zeropoint", str(model), "--catalog", str(catalogue),
            "--out", str(out), "--workers", "1", *extra]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _timed(argv):
    start = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=600)
    return res, time.perf_counter() - start


def _state(folder):
    return {p: (os.stat(folder / p).st_size, os.stat(folder / p).st_mtime_ns) for p in sorted(os.listdir(folder))}


def test_second_identical_command_in_a_new_process_writes_nothing(model_folder, tmp_path):
    catalogue = _catalogue(tmp_path / "cat", 4, 5000)
    out = tmp_path / "zp"
    first, t_first = _timed(_command(model_folder, catalogue, out, "--mc-num", "5"))
    assert first.returncode == 0, first.stderr
    assert "4 partition(s) computed now" in first.stdout
    before = _state(out)
    second, t_second = _timed(_command(model_folder, catalogue, out, "--mc-num", "5"))
    assert second.returncode == 0, second.stderr
    assert "0 partition(s) computed now, 4 already written" in second.stdout
    assert _state(out) == before  # not one byte, not one time stamp
    assert t_second <= t_first / 3, (t_first, t_second)
    # a changed option is refused, naming the command line's flag
    third, _ = _timed(_command(model_folder, catalogue, out, "--mc-num", "6"))
    assert third.returncode == 2 and "--overwrite" in third.stderr.strip().splitlines()[-1]
    assert _state(out) == before
    # so is a changed input file
    extra = pd.read_parquet(catalogue / "stars_00.parquet")
    extra.to_parquet(catalogue / "stars_00.parquet")
    fourth, _ = _timed(_command(model_folder, catalogue, out, "--mc-num", "5"))
    assert fourth.returncode == 2 and "another run" in fourth.stderr and _state(out) == before
    # and with --overwrite the new input is computed
    fifth, _ = _timed(_command(model_folder, catalogue, out, "--mc-num", "5", "--overwrite"))
    assert fifth.returncode == 0 and "4 partition(s) computed now" in fifth.stdout


def test_killed_command_resumes_with_every_row_once(model_folder, tmp_path):
    n_files, rows = 12, 2000
    catalogue = _catalogue(tmp_path / "cat", n_files, rows)
    out = tmp_path / "zp"
    argv = _command(model_folder, catalogue, out, "--mc-num", "50")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and any(p.endswith(".parquet") and not p.startswith(".") for p in os.listdir(out)):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its cluster's worker processes
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = [p for p in os.listdir(out) if p.endswith(".parquet") and not p.startswith(".")]
    assert 0 < len(done) < n_files
    res, _ = _timed(argv)
    assert res.returncode == 0, res.stderr
    assert f"{len(done)} already written" in res.stdout or "already written" in res.stdout
    got = pd.read_parquet(out)
    ids = np.sort(got["source_id"].to_numpy())
    np.testing.assert_array_equal(ids, np.arange(n_files * rows))  # every row exactly once
    assert not [p for p in os.listdir(out) if ".partial" in p]  # no debris of the killed run left
