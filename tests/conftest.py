import os

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(__file__), "data")


def pytest_addoption(parser):
    parser.addoption(
        "--remote-data", action="store_true", default=False, help="run tests that query the live Gaia archive"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--remote-data"):
        return
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
