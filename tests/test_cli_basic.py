"""The command line's contract: version, help, and the exit codes 0 / 2 / 3 / 1."""
import os
import socket
import subprocess
import sys

import pytest
from astropy.table import Table

import astronn_gaiacal
from astronn_gaiacal.cli import EXIT_CODES, main


def _python_m(*argv):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "astronn_gaiacal", *argv], capture_output=True, text=True, env=env)


def _last_line(text):
    """The last line of stderr (TensorFlow may log before the command's own line)."""
    return text.strip().splitlines()[-1]


def test_version_and_help():
    res = _python_m("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"astronn-gaiacal {astronn_gaiacal.__version__}"
    res = _python_m("--help")
    assert res.returncode == 0 and "usage: astronn-gaiacal" in res.stdout
    assert "exit codes:" in res.stdout
    for code in (0, 1, 2, 3, 130, 143):
        assert f"  {code}  " in res.stdout
    assert set(EXIT_CODES) == {0, 1, 2, 3, 130, 143}


def test_bad_argument_exits_2_with_one_line_naming_it(tmp_path):
    res = _python_m("simulate", str(tmp_path / "mock.h5"), "--n-stars", "0")
    assert res.returncode == 2
    line = _last_line(res.stderr)
    assert line.startswith("astronn-gaiacal simulate: error: ") and "--n-stars" in line
    assert "Traceback" not in res.stderr
    assert os.listdir(tmp_path) == []


def test_missing_input_file_exits_2(tmp_path, capsys):
    code = main(["train", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "model")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no such file" in err and "missing.h5" in err


@pytest.mark.parametrize("error", [ValueError("bad numbers inside the library"), RuntimeError("boom")])
def test_internal_error_exits_1_with_traceback(monkeypatch, capsys, error):
    from astronn_gaiacal import registry

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(registry, "registered", broken)
    code = main(["models", "--json"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and f"{type(error).__name__}: {error}" in err
    assert "internal error" in _last_line(err)


def test_archive_outage_exits_3(tmp_path, monkeypatch, capsys):
    from astronn_gaiacal.sources import xmatch

    def unreachable(*args, **kwargs):
        raise xmatch.GaiaArchiveError("cannot reach the Gaia archive (http://fake/): connection refused")

    monkeypatch.setattr(xmatch, "crossmatch", unreachable)
    Table({"ra": [10.0, 20.0], "dec": [-5.0, 5.0]}).write(tmp_path / "stars.csv")
    out = tmp_path / "out.fits"
    code = main(["xmatch", str(tmp_path / "stars.csv"), "--release", "dr3", "--no-cache", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1
    assert err.startswith("astronn-gaiacal xmatch: error: cannot reach the Gaia archive")
    assert not out.exists()


def test_unreachable_scheduler_exits_3(tmp_path, capsys):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "model").mkdir()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["zeropoint", str(tmp_path / "model"), "--catalog", str(tmp_path / "stars.parquet"),
                     "--out", str(tmp_path / "out"), "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1
    assert f"cannot reach the Dask scheduler tcp://127.0.0.1:{port}" in err
    assert not (tmp_path / "out").exists()


def test_failed_partitions_exit_3_after_the_report(tmp_path, monkeypatch, capsys):
    pytest.importorskip("distributed")
    from astronn_gaiacal import distributed

    summary = {"out": str(tmp_path / "out"), "kind": "zeropoint", "n_partitions": 3, "computed": ["part.00000"],
               "skipped": 0, "failed": ["part.00001", "part.00002"], "complete": False, "rows": 10,
               "rows_computed": 10, "seconds": 1.0, "rows_per_s": 10.0}

    def failing(*args, **kwargs):
        raise distributed.PartitionFailure("2 of 3 partition(s) failed", {"part.00001": "x", "part.00002": "y"},
                                           summary)

    monkeypatch.setattr(distributed, "zeropoint_catalog", failing)
    (tmp_path / "model").mkdir()
    code = main(["zeropoint", str(tmp_path / "model"), "--catalog", str(tmp_path / "stars.parquet"),
                 "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert code == 3 and "2 of 3 partition(s) failed" in err
    assert '"computed": 1' in out and '"complete": false' in out
