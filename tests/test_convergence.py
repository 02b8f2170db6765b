"""A training stopped while its loss still falls is flagged, in the folder, the summaries and the CLI."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.models.convergence import (MIN_EPOCHS, TOLERANCE, ConvergenceWarning,
                                                constant_luminosity_loss, convergence_note, ensemble_convergence,
                                                training_convergence)

HERE = os.path.dirname(os.path.abspath(__file__))

#: Training loss per epoch of the default CNN (ApogeeGaiaBCNN, constant offset, lr 3e-3, weights averaged over the
#: last 35 %, training noise to S/N 50) on 3,000 stars of the mock survey (`simulate tr.h5 -n 3000 --seed 0`, then
#: `train tr.h5 --ensemble 1 --epochs 70`), read from its folder's training_history.csv.
CNN_LOSS_70 = [
    0.0968, -0.6386, -1.2168, -0.9004, -0.6785, -1.3371, -1.6984, -1.6813, -1.8279, -1.7878, -1.8627, -1.9152,
    -1.8767, -1.9498, -1.9801, -1.9556, -1.9479, -2.0056, -1.9434, -1.9555, -2.007, -1.9696, -1.9907, -2.0199,
    -2.0532, -2.0694, -2.0501, -2.0463, -2.0739, -2.0535, -2.0251, -2.098, -2.0894, -2.0985, -2.0211, -2.1148,
    -2.1261, -2.1501, -2.1429, -2.1627, -2.1925, -2.1326, -2.1472, -2.1672, -2.1329, -2.1479, -2.171, -2.1639,
    -2.2487, -2.2289, -2.2249, -2.2508, -2.215, -2.237, -2.2563, -2.2447, -2.2446, -2.2573, -2.2217, -2.2975,
    -2.2839, -2.2281, -2.3064, -2.2839, -2.255, -2.2793, -2.244, -2.2599, -2.2603, -2.2761]

#: Training loss of the same CNN with ``--lr 10`` on 300 stars of the mock survey (`simulate tr.h5 -n 300 --seed 5`,
#: then `train tr.h5 --lr 10 --epochs 12 --ensemble 1`): it diverged, then levelled off far above any useful loss.
CNN_LOSS_LR10 = [4.92188e11, 1.25292e7, 6.35464e6, 6.55733e6, 3.55108e6, 1.84262e6, 1.62012e6, 818903.0, 354865.0,
                 227937.0, 153189.0, 131156.0]
#: constant_luminosity_loss of those 300 stars (parallaxes / labels_std, Gaussian loss); 0.493 for the 3,000.
BASELINE_300 = 0.4847


def _toy_file(tmp_path, n, seed):
    """A toy survey written as a dataset file, for the CLI."""
    from _toy import N_PIX, toy_survey

    from astronn_gaiacal.io.dataset import Dataset

    d = toy_survey(n, seed=seed, n_pixels=N_PIX, signal=0.2)
    ds = Dataset(spectra=d["spectra"], columns={"mag": d["mag"], "parallax": d["parallax"],
                                                "parallax_error": d["parallax_error"], "snr": np.full(n, 200.0)},
                 units={"parallax": "mas", "parallax_error": "mas", "mag": "mag"}, attrs={"band": "Ks"})
    ds.write(str(tmp_path / "toy.h5"))
    return str(tmp_path / "toy.h5")


def _decay(n, tau, a=2.0, c=-2.0):
    return a * np.exp(-np.arange(n) / tau) + c


def test_ratio_of_an_exponential_decay_matches_its_derivative():
    # independent computation: the least-squares slope of a smooth curve over a window is its derivative at the
    # window's centre (to second order); the ratio is that times the window over the fall achieved
    for n, tau in [(20, 8.0), (40, 10.0), (70, 12.0), (30, 30.0)]:
        loss = _decay(n, tau)
        v = training_convergence(loss)
        w = v["window"]
        centre = n - (w + 1) / 2.0
        expected = w * (2.0 / tau) * np.exp(-centre / tau) / (loss[0] - loss[-w:].mean())
        assert v["ratio"] == pytest.approx(expected, rel=0.05)
        assert v["converged"] == (expected < TOLERANCE)


def test_the_cnn_loss_is_converged_at_the_recipe_and_not_after_ten_epochs():
    assert training_convergence(CNN_LOSS_70)["converged"]
    assert training_convergence(CNN_LOSS_70[:35])["converged"]  # the demo's no-offset model
    early = training_convergence(CNN_LOSS_70[:10])
    assert not early["converged"] and early["ratio"] > 2 * TOLERANCE
    two = training_convergence(CNN_LOSS_70[:2])
    assert not two["converged"] and two["ratio"] is None and f"fewer than {MIN_EPOCHS}" in two["reason"]


def test_noise_gives_no_false_flag_and_a_falling_loss_is_always_flagged():
    rng = np.random.default_rng(1)
    scatter = np.std(np.diff(CNN_LOSS_70[35:])) / np.sqrt(2)  # the CNN's epoch-to-epoch loss noise
    assert 0.01 < scatter < 0.05
    flat = [training_convergence(_decay(70, 4.0) + rng.normal(0, scatter, 70))["converged"] for _ in range(300)]
    assert np.mean(flat) == 1.0
    falling = [training_convergence(np.linspace(0.0, -2.0, 40) + rng.normal(0, scatter, 40))["converged"]
               for _ in range(300)]
    assert not any(falling)


def test_a_loss_that_does_not_fall_or_is_not_finite_is_not_converged():
    assert "not below" in training_convergence(np.linspace(-2.0, -1.0, 20))["reason"]
    bad = training_convergence([1.0] * 10 + [np.nan] * 5)
    assert not bad["converged"] and "not finite" in bad["reason"]


def test_constant_luminosity_loss_is_half_one_plus_log_residual_variance():
    # independent computation: with one Gaia error for every star, the best s makes sigma^2 + e^s the residual
    # variance of the least-squares line parallax = a 10^(-m/5) + b, so the Gaussian loss is (1 + ln var) / 2
    rng = np.random.default_rng(3)
    m = rng.uniform(7.0, 13.0, 4000)
    plx = 80.0 * 10 ** (-m / 5) - 0.05 + rng.normal(0.0, 0.2, m.size) * rng.uniform(0.5, 1.5, m.size)
    a, b = np.polyfit(10 ** (-m / 5), plx, 1)
    expected = 0.5 * (1.0 + np.log(np.mean((plx - a * 10 ** (-m / 5) - b) ** 2)))
    assert constant_luminosity_loss(plx, np.full(m.size, 0.05), m) == pytest.approx(expected, abs=1e-4)
    # masked parallaxes (-9999, NaN) are left out as in training
    plx_masked = np.concatenate([plx, [-9999.0, np.nan]])
    got = constant_luminosity_loss(plx_masked, np.full(plx_masked.size, 0.05), np.concatenate([m, [9.0, 9.0]]))
    assert got == pytest.approx(expected, abs=1e-4)
    # the Student-t loss is at least as low (it discounts the widest residuals)
    assert constant_luminosity_loss(plx, np.full(m.size, 0.05), m, "gaia_student_t_nll") < expected


def test_a_diverged_training_is_not_converged_however_flat_its_end():
    assert training_convergence(CNN_LOSS_LR10)["converged"]  # by its trend alone: the fall since epoch 1 is huge
    v = training_convergence(CNN_LOSS_LR10, baseline=BASELINE_300)
    assert not v["converged"] and "learnt nothing from the spectra" in v["reason"]
    assert v["baseline_loss"] == BASELINE_300 and v["final_loss"] > 1e5
    good = training_convergence(CNN_LOSS_70, baseline=0.493)
    assert good["converged"] and good["final_loss"] < good["baseline_loss"] - 2.0


def test_ensemble_verdict_and_note():
    good, bad = training_convergence(CNN_LOSS_70), training_convergence(CNN_LOSS_70[:5])
    assert ensemble_convergence([None, None]) is None
    both = ensemble_convergence([good, good])
    assert both["converged"] and convergence_note(both) == ""
    one = ensemble_convergence([good, bad, None])
    assert not one["converged"] and one["members_not_converged"] == [1]
    assert "member(s) 1 of 3" in one["reason"] and "NOT CONVERGED" in convergence_note(one)


def test_fit_records_the_verdict_warns_and_the_folder_keeps_it(tmp_path):
    from _toy import N_PIX, toy_model, toy_survey

    from astronn_gaiacal.models import DeepEnsemble, load
    from astronn_gaiacal.models.folders import read_plugin_config

    toy = toy_survey(300, seed=5, n_pixels=N_PIX, signal=0.2)
    net = toy_model(epochs=2)
    net.calibrate_at_fit = False
    with pytest.warns(ConvergenceWarning, match="ToyApogeeBCNN: NOT CONVERGED .2 epochs"):
        net.fit(toy["spectra"], toy["parallax"], toy["parallax_error"], magnitude=toy["mag"])
    assert net.training_convergence["epochs"] == 2 and net.training_convergence["converged"] is False
    net.save(str(tmp_path / "m"))
    assert read_plugin_config(str(tmp_path / "m"))["training_convergence"] == net.training_convergence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load(str(tmp_path / "m"))
    assert again.training_convergence == net.training_convergence
    ens = DeepEnsemble([net, again])
    assert ens.training_convergence["members_not_converged"] == [0, 1]


def test_cli_flags_it_in_train_and_in_a_second_process(tmp_path, capsys):
    from astronn_gaiacal.cli import main

    data = _toy_file(tmp_path, 200, seed=8)
    out = str(tmp_path / "m")
    argv = ["train", data, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--epochs", "2",
            "--out", out]
    with pytest.warns(ConvergenceWarning):
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "WARNING: NOT CONVERGED (2 epochs" in text
    assert "NOTE: one network: the error is statistical only" in text  # a single model's zero-point error
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import _toy; from astronn_gaiacal.cli import main; "
            f"sys.exit(main(['zeropoint', {out!r}, '--json']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["training_converged"] is False
    assert summary["training_convergence"]["reason"].startswith("2 epochs")
    assert summary["zeropoint_note"].startswith("one network")
    # the catalogue made from it says so in its own header, where a reader of the file will see it
    cat = str(tmp_path / "cat.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", out, data, "--out", cat, "--mc-num", "5"]) == 0
    assert "NOT CONVERGED" in capsys.readouterr().out
    from astropy.io import fits

    assert fits.getheader(cat, 1)["CONVERGD"] is False


def test_cli_flags_a_diverged_training(tmp_path, capsys):
    from astronn_gaiacal.cli import main

    data = _toy_file(tmp_path, 300, seed=5)
    out = str(tmp_path / "m")
    argv = ["train", data, "--model", "ToyApogeeBCNN", "--ensemble", "1", "--epochs", "12",
            "--lr", "10", "--out", out, "--json"]
    with pytest.warns(ConvergenceWarning, match="learnt nothing from the spectra"):
        assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["training_converged"] is False
    verdict = summary["training_convergence"]
    assert verdict["final_loss"] > 1e3 * abs(verdict["baseline_loss"])


def test_folders_saved_before_the_check_are_not_flagged(capsys):
    from astronn_gaiacal.cli import main

    folder = os.path.join(HERE, "data", "saved_0.1.0", "dense_constant")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["zeropoint", folder, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["training_converged"] is None and summary["training_convergence"] is None
    assert "zeropoint_note" in summary  # one network
    ensemble = os.path.join(HERE, "data", "saved_0.1.0", "dense_ensemble")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["zeropoint", ensemble, "--json"]) == 0
    assert "zeropoint_note" not in json.loads(capsys.readouterr().out)
