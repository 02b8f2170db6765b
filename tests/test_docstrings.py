"""Every docstring example in the package runs and shows what it prints.

The modules are found, not listed: any module whose source has a ``>>>`` example
is tested here (those of tests/test_data_docstrings.py there), so a new example
cannot be left unrun.  Examples that need the network are marked ``+SKIP``.
"""
import doctest
import importlib
import pathlib

import pytest

import astronn_gaiacal
from test_data_docstrings import MODULES as TESTED_ELSEWHERE

ROOT = pathlib.Path(astronn_gaiacal.__file__).parent


def _modules_with_examples():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if ">>> " in path.read_text(encoding="utf-8"):
            parts = [p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__"]
            found.append(".".join(parts))
    return found


EXAMPLES = _modules_with_examples()


def test_the_search_finds_the_known_examples():
    assert {"registry", "config", "_versions", "conversions", "io.dataset"} <= set(EXAMPLES)
    assert set(TESTED_ELSEWHERE) <= set(EXAMPLES)


@pytest.mark.parametrize("name", [m for m in EXAMPLES if m not in TESTED_ELSEWHERE])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(f"astronn_gaiacal.{name}" if name else "astronn_gaiacal")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {module.__name__} failed"
    # doctest sees the examples the search found (all of them may be +SKIP: network, long runs)
    assert sum(len(t.examples) for t in doctest.DocTestFinder().find(module)) > 0
