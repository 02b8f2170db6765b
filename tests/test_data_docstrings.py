"""The docstring examples of the data and zero-point modules run and give what they show."""
import doctest
import importlib

import pytest

import astronn_gaiacal  # noqa: F401

MODULES = ["io.dataset", "io.columns", "io.hdf5", "io.figures", "io.catalogue", "sources.spectra", "sources.selection",
           "metrics", "zeropoint.fit", "zeropoint.trends"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"astronn_gaiacal.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
