"""Each cut of the paper's selection at its boundary."""
import numpy as np
import pytest

from astronn_gaiacal.selection import paper_selection, train_validation_split

BASE = {"snr": 250.0, "parallax": 1.0, "parallax_error": 0.05, "visibility_periods_used": 12, "starflag": 0,
        "vscatter": 0.2, "mag": 10.0, "mag_ext": 0.1}


def _cols(name, values):
    n = len(values)
    cols = {k: np.full(n, v, dtype=float) for k, v in BASE.items()}
    cols[name] = np.asarray(values, dtype=float)
    return cols


@pytest.mark.parametrize("name,values,kept,split", [
    ("snr", [200.0, 200.0001], [False, True], "train"),
    ("snr", [200.0, 199.9999], [False, True], "test"),
    ("parallax_error", [0.1, 0.0999], [False, True], None),
    ("visibility_periods_used", [10, 11], [False, True], None),
    ("starflag", [1, 0], [False, True], None),
    ("vscatter", [1.0, 0.9999], [False, True], None),
    ("mag", [-9999.0, 10.0], [False, True], None),
    ("mag_ext", [np.nan, 0.1], [False, True], None),
])
def test_cut_boundaries(name, values, kept, split):
    mask, report = paper_selection(_cols(name, values), split=split)
    assert mask.tolist() == kept
    assert sum(report.values()) - report["selected"] + report["selected"] == len(values)


def test_luminosity_cut_boundary_and_negative_parallax():
    # plx = 100 mas: M = mag - mag_ext exactly; log10 L/Lsun = 0.4 (3.27 - M) = 0 at M = 3.27 (removed)
    cols = _cols("parallax", [100.0, 100.0, -0.5, 0.0])
    cols["mag"] = np.array([3.27, 3.26, 10.0, 10.0])
    cols["mag_ext"] = np.zeros(4)
    mask, report = paper_selection(cols)
    assert mask.tolist() == [False, True, True, False]
    assert report["log10 L/Lsun > 0 or parallax < 0"] == 2


def test_report_adds_up(rng):
    n = 1000
    cols = {k: np.full(n, v, dtype=float) for k, v in BASE.items()}
    cols["snr"] = rng.uniform(50, 400, n)
    cols["parallax_error"] = rng.uniform(0.01, 0.2, n)
    cols["starflag"] = rng.choice([0, 0, 0, 4], n)
    mask, report = paper_selection(cols, split="train")
    removed = sum(v for k, v in report.items() if k != "selected")
    assert removed + report["selected"] == n and report["selected"] == mask.sum()
    with pytest.raises(KeyError, match="'snr'"):
        paper_selection({k: v for k, v in cols.items() if k != "snr"}, split="test")


def test_seeded_split():
    tr, va = train_validation_split(1000, seed=3)
    tr2, va2 = train_validation_split(1000, seed=3)
    assert len(va) == 100 and len(tr) == 900 and not set(tr) & set(va)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, train_validation_split(1000, seed=4)[1])
