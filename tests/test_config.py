"""Settings live in an astropy ConfigNamespace (``astronn_gaiacal.conf``), overridable per call,
and the library leaves the user's process alone (no backend switching, no process-wide timeouts)."""
import os
import pathlib
import re
import socket
import sys

import numpy as np
import pytest
from astropy.table import Table

import astronn_gaiacal
from astronn_gaiacal import conf
from astronn_gaiacal.io.atomic import cache_folder
from astronn_gaiacal.sources.xmatch import crossmatch
from gaia_fake import fake_gaia, make_sky

PACKAGE = pathlib.Path(astronn_gaiacal.__file__).parent


@pytest.fixture
def scene():
    ra = np.array([10.0, 45.0, 80.0, 120.0, 200.0, 250.0, 300.0])
    dec = np.array([5.0, -30.0, 60.0, 0.0, -80.0, 20.0, 40.0])
    return Table({"ra": ra, "dec": dec}), make_sky(ra, dec + 0.5 / 3600)  # each star has a source 0.5" north


def test_conf_is_an_astropy_config_namespace():
    from astropy.config import ConfigNamespace

    assert isinstance(conf, ConfigNamespace) and astronn_gaiacal.conf is conf
    assert conf.gaia_archive_url == "https://gea.esac.esa.int/"
    assert (conf.connect_timeout, conf.read_timeout, conf.chunk_size, conf.retries) == (10.0, 60.0, 5000, 3)
    assert set(conf) >= {"gaia_archive_url", "connect_timeout", "read_timeout", "chunk_size", "retries",
                         "job_timeout", "xmatch_cache_dir", "kernel_cache_dir"}


def test_chunk_size_from_conf_and_per_call(scene):
    inputs, sky = scene
    gaia, fake = fake_gaia(sky)
    with conf.set_temp("chunk_size", 3):
        result = crossmatch(inputs, archive=gaia, cache=False, progress=False)
    assert fake.posts == 3  # 7 rows in chunks of 3
    np.testing.assert_allclose(result["xmatch_sep"], 0.5, atol=1e-6)  # the independent fake found 0.5"
    crossmatch(inputs, archive=gaia, cache=False, progress=False, chunk_size=4)  # the argument wins
    assert fake.posts == 3 + 2
    crossmatch(inputs, archive=gaia, cache=False, progress=False)  # back to conf's 5000: one chunk
    assert fake.posts == 3 + 2 + 1


def test_cache_folder_from_conf_then_env_then_astropy(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTRONN_GAIACAL_CACHE_DIR", str(tmp_path / "env"))
    assert cache_folder("xmatch", "ASTRONN_GAIACAL_CACHE_DIR") == str(tmp_path / "env")
    with conf.set_temp("xmatch_cache_dir", str(tmp_path / "conf")):
        assert cache_folder("xmatch", "ASTRONN_GAIACAL_CACHE_DIR") == str(tmp_path / "conf")
    with conf.set_temp("kernel_cache_dir", str(tmp_path / "kernels")):
        from astronn_gaiacal.nn.fused import kernel_cache_dir

        assert kernel_cache_dir() == str(tmp_path / "kernels")
    monkeypatch.delenv("ASTRONN_GAIACAL_CACHE_DIR")
    from astropy.config import get_cache_dir

    assert cache_folder("xmatch", "ASTRONN_GAIACAL_CACHE_DIR") == os.path.join(get_cache_dir(), "astronn_gaiacal",
                                                                               "xmatch")


def test_archive_cache_follows_conf(scene, tmp_path):
    inputs, sky = scene
    gaia, fake = fake_gaia(sky)
    with conf.set_temp("xmatch_cache_dir", str(tmp_path)):
        crossmatch(inputs, archive=gaia, progress=False)
        assert len(os.listdir(tmp_path)) == 1
        crossmatch(inputs, archive=gaia, progress=False)
    assert fake.posts == 1  # the second run came from the cache conf named


def test_archive_requests_time_out_per_request_not_process_wide(scene):
    from astronn_gaiacal.sources.xmatch import gaia_archive

    inputs, sky = scene
    before_timeout, before_stdout = socket.getdefaulttimeout(), sys.stdout
    gaia, fake = fake_gaia(sky)
    crossmatch(inputs, archive=gaia, cache=False, progress=False)
    assert socket.getdefaulttimeout() == before_timeout and sys.stdout is before_stdout
    with conf.set_temp("connect_timeout", 3.0), conf.set_temp("read_timeout", 7.0):
        session = gaia_archive()._session  # the default client's session carries conf's timeouts
    assert session.timeout == (3.0, 7.0)
    assert gaia_archive(timeout=(1, 2))._session.timeout == (1.0, 2.0)


def test_archive_errors_are_astroquery_errors():
    from astroquery.exceptions import RemoteServiceError

    from astronn_gaiacal.sources.xmatch import GaiaArchiveError, GaiaTruncatedResultError

    assert issubclass(GaiaArchiveError, RemoteServiceError) and issubclass(GaiaTruncatedResultError, GaiaArchiveError)


@pytest.mark.parametrize("pattern", [r"matplotlib\.use\(", r"setdefaulttimeout", r"\bplt\.", r"import matplotlib\.pyplot"])
def test_the_library_leaves_the_process_alone(pattern):
    hits = [f"{path.relative_to(PACKAGE)}:{n}" for path in PACKAGE.rglob("*.py")
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert not hits, hits
