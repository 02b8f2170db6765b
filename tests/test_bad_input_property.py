"""Property: random corruptions of a valid dataset never give an unflagged wrong number or a traceback.

Each example corrupts the toy dataset (NaN / -9999 / inf injections into a column, a unit change of the
parallaxes or of Teff, a dropped column, duplicated rows, a truncated file) and runs ``train``, ``predict``
or ``zeropoint`` on it through the command line.  Every run must either exit 2 with a one-line message, or
exit 0 with every affected star flagged, excluded or given no value (-9999 / NaN); never exit 1.
The number of examples is bounded (about a minute on two cores).
"""
import json
import os

import numpy as np
import pytest
from astropy.table import QTable, Table

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from astronn_gaiacal.cli import main  # noqa: E402
from astronn_gaiacal.io.dataset import Dataset  # noqa: E402

from _toy import N_PIX, toy_survey  # noqa: E402

N = 48
COLUMNS = ("spectra", "mag", "parallax", "parallax_error", "phot_g_mean_mag", "bp_rp", "teff")
INJECTIONS = {"nan": np.nan, "-9999": -9999.0, "inf": np.inf}


def _dataset():
    d = toy_survey(N, seed=9, n_pixels=N_PIX, zeropoint=-0.1)
    return Dataset(
        spectra=d["spectra"],
        columns={"mag": d["mag"], "mag_ext": np.zeros(N), "parallax": d["parallax"],
                 "parallax_error": d["parallax_error"], **d["features"], "source_id": np.arange(N) + 500},
        units={"parallax": "mas", "parallax_error": "mas", "mag": "mag", "teff": "K"},
        attrs={"band": "Ks", "gaia_release": "dr2"},
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import _toy  # noqa: F401  (registers ToyApogeeBCNN)

    folder = tmp_path_factory.mktemp("property")
    _dataset().write(str(folder / "clean.h5"))
    assert main(["train", str(folder / "clean.h5"), "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", "multivariate",
                 "--epochs", "1", "--batch-size", "16", "--out", str(folder / "mv")]) == 0
    return folder


def _corrupt(kind, column, rows, value):
    """The corrupted dataset's columns, and the rows a correct run must flag, exclude or leave without a value."""
    ds = _dataset()
    spectra = ds["spectra"].copy()
    columns = {n: np.array(ds[n], copy=True) for n in ds.names}
    units = dict(ds.units)
    affected = np.zeros(N, bool)
    if kind == "inject":
        if column == "spectra":
            spectra[rows, N_PIX // 2] = value
        else:
            columns[column][rows] = value
        affected[rows] = True
    elif kind == "units":  # parallaxes in arcsec or uas, or Teff in kK, without a unit
        if column == "teff":
            columns["teff"] = columns["teff"] / 1000.0
            units.pop("teff")
            affected[:] = True
        else:
            scale = 1e-3 if column == "arcsec" else 1e3
            for name in ("parallax", "parallax_error"):
                columns[name] = columns[name] * scale
                units.pop(name)
            affected[:] = True
    elif kind == "drop":
        if column == "spectra":
            spectra = None
        else:
            columns.pop(column)
            units.pop(column, None)
    elif kind == "duplicate":
        order = np.concatenate([np.arange(N), rows])
        spectra, columns = spectra[order], {n: v[order] for n, v in columns.items()}
        affected = np.zeros(len(order), bool)
        affected[N:] = True
    return Dataset(spectra=spectra, columns=columns, units=units, attrs=ds.attrs), affected


corruptions = st.one_of(
    st.tuples(st.just("inject"), st.sampled_from(COLUMNS), st.sets(st.integers(0, N - 1), min_size=1, max_size=5),
              st.sampled_from(sorted(INJECTIONS))),
    st.tuples(st.just("units"), st.sampled_from(["arcsec", "uas", "teff"]), st.just(frozenset()), st.just("")),
    st.tuples(st.just("drop"), st.sampled_from(COLUMNS), st.just(frozenset()), st.just("")),
    st.tuples(st.just("duplicate"), st.just(""), st.sets(st.integers(0, N - 1), min_size=1, max_size=4),
              st.just("")),
    st.tuples(st.just("truncate"), st.just(""), st.just(frozenset()), st.just("")),
)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _check_predict(cat, affected, kind, column):
    dist = cat["dist"].value
    no_value = (dist == -9999) | ~np.isfinite(dist)
    flags = np.zeros(len(cat), bool)
    for name in ("flag_spectrum", "flag_magnitude", "flag_duplicate", "out_of_range"):
        if name in cat.colnames:
            flags |= np.asarray(cat[name], bool)
    if column in ("spectra", "mag") or kind == "duplicate":
        assert np.all(no_value[affected] | flags[affected])
    if column in ("phot_g_mean_mag", "bp_rp", "teff") and kind == "inject":
        zp = cat["zeropoint"].value
        assert np.all((zp[affected] == -9999) | flags[affected])  # no zero-point: the Gaia value is not corrected
        w = cat["weighted_parallax"].value
        nn = cat["nn_parallax"].value
        # the weighted parallax of a star without a zero-point is the NN parallax alone, never the raw Gaia one
        np.testing.assert_allclose(w[affected], nn[affected], rtol=1e-6)
    if kind == "units" and column == "teff":
        assert np.all(np.asarray(cat["out_of_range"], bool))
    assert np.all(np.isfinite(dist) | (dist == -9999))


@settings(max_examples=24, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corruption=corruptions, command=st.sampled_from(["predict", "zeropoint", "train"]))
def test_corrupted_inputs_exit_2_or_flag_every_affected_star(models, tmp_path_factory, capsys, corruption, command):
    kind, column, rows, value = corruption
    if command == "train" and kind == "units" and column == "teff":
        return  # a feature in other units trains a model in those units: nothing to flag
    rows = sorted(rows)
    work = tmp_path_factory.mktemp("case")
    ds, affected = _corrupt(kind, column, rows, INJECTIONS.get(value))
    data = work / "data.h5"
    if command == "zeropoint":  # a Gaia table: the features only
        table = Table({n: ds[n] for n in ("phot_g_mean_mag", "bp_rp", "teff") if n in ds})
        data = work / "gaia.fits"
        table.write(data)
    else:
        ds.write(str(data))
    if kind == "truncate":
        size = os.path.getsize(data)
        with open(data, "r+b") as f:
            f.truncate(size // 3)
    before = set(os.listdir(work))
    if command == "predict":
        out = work / "cat.fits"
        code, stdout, err = _run(capsys, "predict", models / "mv", data, "--out", out, "--mc-num", "3", "--json")
    elif command == "zeropoint":
        out = work / "zp.fits"
        code, stdout, err = _run(capsys, "zeropoint", models / "mv", data, "--out", out, "--mc-num", "3", "--json")
    else:
        out = work / "model"
        code, stdout, err = _run(capsys, "train", data, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", "multivariate",
                                 "--epochs", "1", "--batch-size", "16", "--out", out, "--json")
    assert code in (0, 2), err  # never an internal error
    assert "Traceback" not in err
    if code == 2:
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"astronn-gaiacal {command}: error: ")
        assert set(os.listdir(work)) == before  # no partial output
        return
    summary = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON summary"))
    assert kind != "truncate"
    if kind == "units" and column != "teff" and command != "zeropoint":  # a Gaia table of features only
        pytest.fail(f"parallaxes in {column} without a unit were accepted")
    if kind == "drop":
        assert column in ("parallax", "parallax_error") or (command == "zeropoint" and column in (
            "spectra", "mag"))  # an optional column; the required ones are refused
    if command == "predict":
        _check_predict(QTable.read(out), affected, kind, column)
    elif command == "zeropoint":
        back = Table.read(out)
        zp = np.asarray(back["zeropoint"], float)
        flagged = ~np.isfinite(zp) | np.asarray(back["out_of_range"], bool)
        if column in ("phot_g_mean_mag", "bp_rp", "teff"):
            assert np.all(flagged[affected])
        assert summary["n_missing_features"] + summary["n_out_of_range"] >= int(flagged.sum())
    else:
        excluded = sum(summary["excluded"].values())
        if column in ("spectra", "mag", "phot_g_mean_mag", "bp_rp", "teff") or kind == "duplicate":
            assert excluded >= int(affected.sum())
        if column == "parallax_error" and kind == "inject":
            assert excluded >= int(affected.sum())
