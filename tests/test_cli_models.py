"""train / predict / zeropoint / models subcommands end to end on tiny data."""
import json

import numpy as np
import pytest
from astropy.table import QTable, Table

from astronn_gaiacal.zeropoint.estimates import DEFAULT_ESTIMATE
from astronn_gaiacal.cli import main
from astronn_gaiacal.io.dataset import Dataset
from astronn_gaiacal.zeropoint.fit import fit_zeropoint

from _toy import N_PIX, toy_survey


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    d = toy_survey(160, seed=2, n_pixels=N_PIX, zeropoint=-0.1)
    ds = Dataset(
        spectra=d["spectra"],
        columns={"mag": d["mag"], "mag_ext": np.zeros(160), "parallax": d["parallax"],
                 "parallax_error": d["parallax_error"], **d["features"],
                 "apogee_id": np.array([f"toy{i}" for i in range(160)]), "ra": np.linspace(0, 10, 160),
                 "dec": np.linspace(-5, 5, 160)},
        units={"parallax": "mas", "parallax_error": "mas", "mag": "mag", "teff": "K"},
        attrs={"band": "Ks", "gaia_release": "dr2"},
    )
    path = tmp_path_factory.mktemp("data") / "toy.h5"
    ds.write(str(path))
    return str(path)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_registered(capsys):
    code, out, _ = _run(capsys, "models", "--json")
    names = [m["name"] for m in json.loads(out)["models"]]
    assert code == 0 and {"ApogeeGaiaBCNN", "ApogeeDR17GaiaDR3BCNN", "DenseGaiaBNN", "ToyApogeeBCNN"} <= set(names)


def test_train_predict_zeropoint_constant(tmp_path, data_file, capsys):
    out = tmp_path / "model"
    code, stdout, _ = _run(capsys, "train", data_file, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", "constant",
                           "--epochs", "3", "--out", str(out), "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["offset"] == "constant" and summary["epochs"] == 3 and np.isfinite(summary["zeropoint_uas"])
    code, stdout, _ = _run(capsys, "zeropoint", str(out), "--json", "--mc-num", "20")
    zp = json.loads(stdout)
    assert code == 0 and {"zeropoint_uas", "zeropoint_err_uas"} <= set(zp) and zp["zeropoint_err_uas"] >= 0
    cat = tmp_path / "cat.fits"
    code, stdout, _ = _run(capsys, "predict", str(out), data_file, "--out", str(cat), "--mc-num", "5", "--json")
    assert code == 0 and json.loads(stdout)["n_stars"] == 160
    t = QTable.read(cat)
    for col in ("apogee_id", "fakemag", "nn_parallax_error", "dist", "weighted_dist", "zeropoint", "parallax"):
        assert col in t.colnames
    np.testing.assert_allclose(t["zeropoint"].value, zp["zeropoint_uas"] / 1000, rtol=0.5, atol=0.02)

    # --refit: maximum likelihood with the network fixed, the same numbers as the Python API
    import tensorflow as tf

    from astronn_gaiacal.io.dataset import read_dataset
    from astronn_gaiacal.models import load

    code, stdout, _ = _run(capsys, "zeropoint", str(out), "--refit", data_file, "--json", "--mc-num", "20",
                           "--seed", "3")  # the CLI seeds its MC dropout as set_random_seed(3) does below
    refit = json.loads(stdout)
    assert code == 0 and refit["zeropoint_estimate"] == DEFAULT_ESTIMATE == "refit_consistency_ensemble"
    assert refit["refit"]["n_stars"] == 160 and refit["refit"]["members"] == 1
    assert refit["learned_zeropoint_uas"] == pytest.approx(zp["zeropoint_uas"], abs=5 * zp["zeropoint_err_uas"] + 1e-6)
    ds, net = read_dataset(data_file), load(str(out))
    net.mc_num = 20
    tf.keras.utils.set_random_seed(3)
    expected = net.refit_zeropoint(ds["spectra"], ds["parallax"], ds["parallax_error"], magnitude=ds.corrected_mag())
    # one member: the plain refit, its error times the PDG factor of the four luminosity quartiles
    tf.keras.utils.set_random_seed(3)
    model_plx = net.predict_parallax(ds["spectra"], magnitude=ds.corrected_mag())[0].to_value("mas")
    luminosity = model_plx * 10 ** (0.2 * np.asarray(ds.corrected_mag(), dtype=float))
    edges = np.quantile(luminosity, [0.25, 0.5, 0.75])
    group = np.searchsorted(edges, luminosity, side="right")
    zp_g, err_g = np.transpose([(f.value.to_value("uas"), f.error.to_value("uas")) for f in (
        fit_zeropoint(ds["parallax"][group == g], ds["parallax_error"][group == g], model_plx[group == g])
        for g in range(4))])
    mean = np.sum(zp_g / err_g**2) / np.sum(1 / err_g**2)
    factor = np.sqrt(max(1.0, np.sum((zp_g - mean) ** 2 / err_g**2) / 3))
    assert refit["refit"]["consistency_factor"] == pytest.approx(factor, rel=1e-4)
    assert refit["zeropoint_uas"] == pytest.approx(expected.value.to_value("uas"), rel=1e-5)
    assert refit["zeropoint_err_uas"] == pytest.approx(factor * expected.error.to_value("uas"), rel=1e-4)
    code, _, err = _run(capsys, "zeropoint", str(out), "--refit", str(tmp_path / "missing.h5"))
    assert code == 2 and "no such file" in err


def test_train_multivariate_and_zeropoint_table(tmp_path, data_file, capsys):
    out = tmp_path / "mv"
    code, _, _ = _run(capsys, "train", data_file, "--model", "ToyApogeeBCNN", "--ensemble", "1",
                      "--offset", "multivariate", "--epochs", "2", "--out", str(out))
    assert code == 0
    table = Table({"phot_g_mean_mag": np.linspace(11, 17, 30), "bp_rp": np.full(30, 1.5), "teff": np.linspace(4200, 5000, 30)})
    tpath = tmp_path / "gaia.ecsv"
    table.write(tpath)
    code, stdout, _ = _run(capsys, "zeropoint", str(out), str(tpath), "--json", "--mc-num", "5")
    summary = json.loads(stdout)
    assert code == 0 and summary["n_stars"] == 30
    back = Table.read(summary["out"])
    assert back["zeropoint"].unit == "mas" and len(back) == 30
    assert "phot_g_mean_mag" in summary["quadratic_trends"]
    # the shared-mask path gives the same per-star distribution
    runs = {}
    for flag in ([], ["--shared-masks"]):
        code, stdout, _ = _run(capsys, "zeropoint", str(out), str(tpath), "--json", "--mc-num", "400", "--overwrite",
                               "--out", str(tmp_path / f"zp{len(flag)}.ecsv"), *flag)
        assert code == 0
        runs[len(flag)] = Table.read(json.loads(stdout)["out"])
    a, b = runs[0], runs[1]
    sigma = np.sqrt((a["zeropoint_error"] ** 2 + b["zeropoint_error"] ** 2) / 400).value
    assert np.all(np.abs(a["zeropoint"] - b["zeropoint"]).value < 5 * sigma + 1e-9)
    np.testing.assert_allclose(b["zeropoint_error"], a["zeropoint_error"], rtol=0.35)
    # --refit on a multivariate model: the trend fit with the network fixed, as the Python API gives it
    import tensorflow as tf

    from astronn_gaiacal.io.dataset import read_dataset
    from astronn_gaiacal.models import load

    code, stdout, _ = _run(capsys, "zeropoint", str(out), "--refit", data_file, "--json", "--mc-num", "10",
                           "--seed", "4")
    refit = json.loads(stdout)["refit_trend"]
    assert code == 0 and refit["n_stars"] == 160 and set(refit["trends"]) == {"phot_g_mean_mag", "bp_rp", "teff"}
    ds, net = read_dataset(data_file), load(str(out))
    net.mc_num = 10
    tf.keras.utils.set_random_seed(4)
    expected = net.refit_zeropoint_trend(ds["spectra"], ds["parallax"], ds["parallax_error"],
                                         {f: ds[f] for f in net.offset_features}, magnitude=ds.corrected_mag())
    assert refit["scale"] == pytest.approx(expected.scale, rel=1e-6)
    assert refit["trends"]["teff"]["b"] == pytest.approx(expected.trend("teff").coeffs[1], rel=1e-5, abs=1e-9)


def test_red_clump_anchors_pin_the_multivariate_refit(tmp_path, data_file, capsys, data_path):
    """``zeropoint --refit DATA --red-clump COLUMN``: the anchored trend refit, with anchors computed here by hand."""
    import tensorflow as tf

    from astronn_gaiacal.io.dataset import read_dataset
    from astronn_gaiacal.models import load

    out = tmp_path / "mv"
    assert _run(capsys, "train", data_file, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", "multivariate",
                "--epochs", "2", "--out", str(out))[0] == 0
    ds = read_dataset(data_file)
    clump = np.zeros(len(ds), bool)
    clump[::4] = True  # 40 stars
    anchored_file = str(tmp_path / "rc.h5")
    ds.with_columns(is_rc=clump, rc_int=clump.astype(int), rc_bad=np.where(clump, 1.0, 0.5),
                    rc_none=np.zeros(len(ds), bool)).write(anchored_file)
    capsys.readouterr()
    code, stdout, _ = _run(capsys, "zeropoint", str(out), "--refit", anchored_file, "--red-clump", "is_rc", "--json",
                           "--mc-num", "10", "--seed", "5")
    refit = json.loads(stdout)["refit_trend"]
    assert code == 0 and refit["n_anchors"] == 40 and refit["anchors"]["column"] == "is_rc"
    # M_Ks = -1.61 +- 0.17 mag: fakemag 10^(M/5 + 2), its error ln(10)/5 fakemag sigma_M
    fakemag = 10 ** (0.2 * -1.61 + 2)
    known = np.where(clump, fakemag, np.nan)
    net = load(str(out))
    net.mc_num = 10
    tf.keras.utils.set_random_seed(5)
    expected = net.refit_zeropoint_trend(ds["spectra"], ds["parallax"], ds["parallax_error"],
                                         {f: ds[f] for f in net.offset_features}, magnitude=ds.corrected_mag(),
                                         anchor_fakemag=known, anchor_fakemag_error=np.log(10) / 5 * fakemag * 0.17)
    assert refit["luminosity_offset"] == pytest.approx(expected.luminosity_offset, rel=1e-5, abs=1e-6)
    assert refit["trends"]["phot_g_mean_mag"]["b"] == pytest.approx(expected.trend("phot_g_mean_mag").coeffs[1],
                                                                     rel=1e-5, abs=1e-9)
    code, stdout, _ = _run(capsys, "zeropoint", str(out), "--refit", anchored_file, "--red-clump", "rc_int",
                           "--mc-num", "10", "--seed", "5")
    assert code == 0 and "pinned by 40 anchor star(s)" in stdout
    cases = [
        (["--refit", anchored_file, "--red-clump", "rc_bad"], "'rc_bad'"),
        (["--refit", anchored_file, "--red-clump", "rc_none"], "marks no star"),
        (["--refit", anchored_file, "--red-clump", "no_such_column"], "no_such_column"),
        (["--red-clump", "is_rc"], "needs --refit"),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, "zeropoint", str(out), *argv, "--mc-num", "10")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, argv
    with pytest.warns(Warning):  # a folder saved before the calibrations existed
        code, _, err = _run(capsys, "zeropoint", data_path("saved_0.1.0", "dense_constant"), "--refit", anchored_file,
                            "--red-clump", "is_rc")
    assert code == 2 and "multivariate" in err.splitlines()[-1]


def test_train_with_a_fixed_luminosity_network(tmp_path, data_file, capsys):
    first, second = tmp_path / "const", tmp_path / "mv"
    assert _run(capsys, "train", data_file, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", "constant", "--epochs", "2",
                "--out", str(first))[0] == 0
    code, stdout, _ = _run(capsys, "train", data_file, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset", "multivariate",
                           "--epochs", "2", "--luminosity-from", str(first), "--out", str(second), "--json")
    assert code == 0
    from astronn_gaiacal.models import load

    a, b = load(str(first)), load(str(second))
    assert b.luminosity_frozen and b.luminosity_from == str(first.resolve())
    for wa, wb in zip(a.luminosity_model.get_weights(), b.luminosity_model.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_bad_cli_input(tmp_path, data_file, capsys):
    cases = [
        (["train", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "a")], "no such file"),
        (["train", data_file, "--model", "NoSuchModel", "--out", str(tmp_path / "b")], "unknown model"),
        (["train", data_file, "--offset", "constant", "--features", "bp_rp", "--out", str(tmp_path / "c")],
         "--features only applies"),
        (["train", data_file, "--model", "ToyApogeeBCNN", "--offset", "multivariate", "--features", "ruwe",
          "--out", str(tmp_path / "d")], "ruwe"),
        (["train", data_file, "--ensemble", "2", "--jobs", "0", "--out", str(tmp_path / "f")], "--jobs must be a positive integer (>= 1)"),
        (["train", data_file, "--luminosity-from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g")],
         "no such model folder"),
        (["train", data_file, "--fine-tune-luminosity", "--out", str(tmp_path / "h")], "needs --luminosity-from"),
        (["train", data_file, "--model", "ToyApogeeBCNN", "--luminosity-from", str(tmp_path), "--out",
          str(tmp_path / "i")],
         "neither an astroNN model folder nor an ensemble folder"),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("not a table")
    cases.append((["train", str(bad), "--out", str(tmp_path / "e")], "cannot read"))
    for argv, message in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        assert message in err and len(err.strip().splitlines()) == 1
        assert not any(p.name in ("a", "b", "c", "d", "e", "f", "g", "h", "i") for p in tmp_path.iterdir())


def test_train_quadratic_offset_head_and_the_calibrated_trend(tmp_path, data_file, capsys):
    from astronn_gaiacal.models import load

    out = tmp_path / "quad"
    code, stdout, _ = _run(capsys, "train", data_file, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--offset",
                           "multivariate", "--offset-head", "quadratic", "--epochs", "2", "--out", str(out), "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["zeropoint_calibrated"]
    assert summary["zeropoint_calibration"]["estimate"] == "trend_refit"
    assert load(str(out)).offset_head == "quadratic"
    capsys.readouterr()  # astroNN's loading chatter
    code, stdout, _ = _run(capsys, "zeropoint", str(out), "--json")  # no table: the stored trend is reported
    assert code == 0 and json.loads(stdout)["zeropoint_calibration"]["trends"].keys() == {
        "phot_g_mean_mag", "bp_rp", "teff"}
    code, _, err = _run(capsys, "train", data_file, "--offset", "constant", "--offset-head", "quadratic", "--out",
                        str(tmp_path / "bad"))
    assert code == 2 and "--offset-head" in err
