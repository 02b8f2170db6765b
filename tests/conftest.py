import os

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(__file__), "data")


#: True when this conftest provides ``--remote-data`` itself because pytest-remotedata is not loaded.
_OWN_REMOTE_DATA = False


def pytest_addoption(parser, pluginmanager):
    """``--remote-data``: pytest-remotedata's option (it comes with pytest-astropy and ``.[test]``).

    Without the plugin, a compatible fallback: ``--remote-data`` (or ``=any``) runs
    the tests marked ``remote_data``, which are skipped otherwise.
    """
    global _OWN_REMOTE_DATA
    if pluginmanager.has_plugin("pytest_remotedata") or pluginmanager.has_plugin("pytest_remotedata.plugin"):
        return
    try:
        parser.addoption("--remote-data", nargs="?", const="any", default="none", choices=["none", "astropy", "any"],
                         help="run the tests that query the live Gaia archive (pytest-remotedata's option)")
    except ValueError:  # already added by a plugin registered under another name
        return
    _OWN_REMOTE_DATA = True


def pytest_collection_modifyitems(config, items):
    if not _OWN_REMOTE_DATA or config.getoption("--remote-data") == "any":
        return  # pytest-remotedata skips (and blocks the network for) the others itself
    skip = pytest.mark.skip(reason="needs the live Gaia archive; run with --remote-data")
    for item in items:
        if "remote_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(20190417)


@pytest.fixture
def data_path():
    def _path(*parts):
        return os.path.join(DATA, *parts)

    return _path


@pytest.fixture(autouse=True)
def _quiet_tf_seed():
    import astronn_gaiacal  # noqa: F401  (compatibility layer first)
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1234)
    yield
