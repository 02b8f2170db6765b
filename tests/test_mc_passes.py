"""One MC-dropout pass with dropout on is refused; ``--no-dropout`` is one deterministic pass, with a warning."""
import json
import warnings

import numpy as np
import pytest
from astropy.table import Table

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.constants import is_missing
from astronn_gaiacal.nn.inference import check_mc_passes, dropout_active, dropout_disabled


def test_check_mc_passes():
    check_mc_passes(2)
    check_mc_passes(1, dropout=False)
    with pytest.raises(ValueError, match="mc_num=1 with MC dropout on"):
        check_mc_passes(1)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            check_mc_passes(bad)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from _toy import N_PIX, toy_model, toy_survey

    from astronn_gaiacal.io.dataset import Dataset

    tmp = tmp_path_factory.mktemp("mc")
    d = toy_survey(300, seed=3, n_pixels=N_PIX, signal=0.2)
    net = toy_model(epochs=2)
    net.calibrate_at_fit = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"])
    net.save(str(tmp / "m"))
    ds = Dataset(spectra=d["spectra"][:40], columns={"mag": d["mag"][:40]}, units={"mag": "mag"},
                 attrs={"band": "Ks"})
    ds.write(str(tmp / "stars.h5"))
    return net, str(tmp / "m"), str(tmp / "stars.h5"), d


def test_the_api_refuses_one_pass_with_dropout_on(toy):
    net, _, _, d = toy
    net.mc_num = 1
    try:
        assert dropout_active(net.keras_model_predict)
        with pytest.raises(ValueError, match="mc_num=1 with MC dropout on"):
            net.predict(d["spectra"][:5])
        with dropout_disabled(net.keras_model_predict):
            assert not dropout_active(net.keras_model_predict)
            fakemag, err = net.predict(d["spectra"][:5], calibrated=False)
        # no spread measured: the model part and the total are unknown (NaN), not 0; the predictive part stays
        assert np.all(np.isnan(err["model"])) and np.all(np.isnan(err["total"])) and np.all(err["predictive"] > 0)
        net.mc_num = 20
        _, err = net.predict(d["spectra"][:5], calibrated=False)
        assert np.all(err["model"] > 0) and np.all(err["total"] > err["predictive"])
    finally:
        net.mc_num = 100


def test_the_zeropoint_api_refuses_one_pass_and_a_deterministic_pass_has_no_error(toy):
    net = toy[0]
    assert dropout_active(net.offset_model)
    with pytest.raises(ValueError, match="mc_num=1 with MC dropout on"):
        net.predict_zeropoint(mc_num=1)
    with dropout_disabled(net.offset_model):
        zp, err = net.predict_zeropoint(mc_num=1)
    assert np.isfinite(zp.value) and np.isnan(err.value)  # no spread measured: unknown, not 0
    _, err = net.predict_zeropoint(mc_num=20)
    assert err.value > 0
    for bad in (0, 2.5):  # refused, not cast to another number of passes
        with pytest.raises(ValueError, match="positive integer"):
            net.predict_zeropoint(mc_num=bad)


def test_cli_refuses_mc_num_1_and_runs_no_dropout_as_one_deterministic_pass(toy, tmp_path, capsys):
    from astronn_gaiacal.cli import main
    from astronn_gaiacal.models import load

    _, folder, stars, d = toy
    out = str(tmp_path / "cat.fits")
    assert main(["predict", folder, stars, "--out", out, "--mc-num", "1"]) == 2
    err = capsys.readouterr().err
    assert "--mc-num 1 with MC dropout on" in err and "--no-dropout" in err and len(err.strip().splitlines()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", folder, stars, "--out", out, "--no-dropout", "--json"]) == 0
    captured = capsys.readouterr()
    assert "WARNING: --no-dropout runs one deterministic pass" in captured.err
    summary = json.loads(captured.out)
    assert summary["dropout"] is False and summary["mc_num"] == 1
    # independently: the Keras network's own output with its dropout layers switched off, in this process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = load(folder)
    x = net._normalise_spectra(np.asarray(d["spectra"][:40], np.float32))
    with dropout_disabled(net.keras_model_predict):
        raw = np.asarray(net.keras_model_predict(x, training=False))
    cat = Table.read(out)
    np.testing.assert_allclose(np.asarray(cat["fakemag"], float), raw[:, 0] * net._label_std(), rtol=1e-5)
    # no MC spread was measured: the errors are missing (-9999), not 0, and the weighting falls back on Gaia
    has_dist = ~is_missing(np.asarray(cat["dist"].value, float))
    assert has_dist.sum() > 30 and summary["n_with_distance"] == has_dist.sum()
    for name in ("fakemag_error", "nn_parallax_model_error", "nn_parallax_error", "dist_model_error", "dist_error"):
        assert np.all(is_missing(np.asarray(getattr(cat[name], "value", cat[name]), float))), name
    assert summary["median_fractional_dist_error"] is None
    # two runs of one deterministic pass agree exactly; MC dropout would not
    out2 = str(tmp_path / "cat2.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", folder, stars, "--out", out2, "--no-dropout"]) == 0
    np.testing.assert_array_equal(np.asarray(Table.read(out2)["fakemag"]), np.asarray(cat["fakemag"]))


def test_zeropoint_refuses_one_pass_and_a_stray_no_dropout(toy, capsys):
    from astronn_gaiacal.cli import main

    _, folder, _, _ = toy
    assert main(["zeropoint", folder, "--mc-num", "1"]) == 2
    assert "--mc-num 1 with MC dropout on" in capsys.readouterr().err
    assert main(["zeropoint", folder, "--no-dropout"]) == 2
    assert "--no-dropout applies to --catalog only" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["zeropoint", folder, "--mc-num", "2", "--json"]) == 0
    assert np.isfinite(json.loads(capsys.readouterr().out)["zeropoint_uas"])


@pytest.mark.parametrize("command", [["demo", "--out", "D"], ["calibrate-study", "--out", "S"]])
def test_demo_and_study_refuse_one_pass_before_training(command, tmp_path, monkeypatch, capsys):
    from astronn_gaiacal.cli import main

    monkeypatch.chdir(tmp_path)
    assert main([*command, "--mc-num", "1"]) == 2
    assert "--mc-num 1 has no MC-dropout spread" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def _subprocess_main(*argv):
    """The CLI in a new Python process, with the tests' toy model class registered (as a user's own would be)."""
    import os
    import subprocess
    import sys

    code = "import sys, _toy; from astronn_gaiacal.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_same_seed_gives_the_same_numbers_in_another_process(toy, tmp_path, capsys):
    """``--seed`` seeds the in-process MC dropout of predict and zeropoint, not only Dask partitions."""
    from astronn_gaiacal.cli import main

    _, folder, stars, _ = toy
    cats = {}
    for name, seed, here in (("a", 3, True), ("b", 3, False), ("c", 4, True)):
        out = tmp_path / f"{name}.fits"
        args = ["predict", folder, stars, "--out", out, "--mc-num", "8", "--seed", seed]
        if here:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert main([str(a) for a in args]) == 0
        else:
            _subprocess_main(*args)
        cats[name] = Table.read(out)
    for col in ("fakemag", "fakemag_error", "nn_parallax"):
        a, b, c = (np.asarray(cats[k][col], float) for k in "abc")
        np.testing.assert_allclose(b, a, rtol=1e-5)  # another process, the same seed: the same MC draws
        assert np.max(np.abs(c - a) / np.abs(a)) > 1e-3  # another seed: other draws (8 passes: per-cent noise)
    capsys.readouterr()
    learned = {}
    for seed in (3, 3, 4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["zeropoint", folder, "--learned", "--mc-num", "8", "--seed", str(seed), "--json"]) == 0
        learned.setdefault(seed, []).append(json.loads(capsys.readouterr().out))
    first, again = learned[3]
    assert first == again
    assert first != learned[4][0]
