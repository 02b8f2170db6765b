"""Training spectra degraded to the S/N of application (astronn_gaiacal.nn.noise).

The noise law is checked against closed forms: for a star of S/N s degraded to
t, log-uniform in [f, s], the noise variance over the pixel error squared is
(s/t)^2 - 1, whose mean over t is (r^2 - 1) / (2 ln r) - 1 with r = s / f.
"""
import json
import warnings

import numpy as np
import pytest
from scipy import stats

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal._compat import tf
from astronn_gaiacal.models.calibration import degrade_spectra
from astronn_gaiacal.nn.batches import training_batches
from astronn_gaiacal.nn.noise import TrainingNoise, TrainingNoiseWarning, noise_errors, spectra_snr

P = 400  # pixels


def _noise_of(noise, n_rows, key):
    x = tf.zeros((n_rows, noise.columns, 1))
    idx = tf.range(n_rows) % noise._snr.shape[0]
    return noise(x, idx, tf.constant(key, tf.int64)).numpy()[..., 0]


def test_noise_variance_matches_the_log_uniform_law():
    err = np.full((1, P), 0.01, np.float32)
    for snr, floor in [(400.0, 50.0), (120.0, 50.0)]:
        noise = TrainingNoise(noise_errors(err), [snr], floor, seed=1, columns=P + 2)
        out = _noise_of(noise, 4000, key=3)
        ratio2 = (out[:, :P] / 0.01) ** 2
        r = snr / floor
        expected = (r**2 - 1) / (2 * np.log(r)) - 1
        per_row = ratio2.mean(axis=1)
        assert per_row.mean() == pytest.approx(expected, rel=0.04)
        # each row's S/N target: log-uniform in [floor, snr] (per-row variance over 400 pixels: +-7 %)
        target = snr / np.sqrt(1 + per_row)
        u = np.log(target / floor) / np.log(r)
        assert stats.kstest(np.clip(u, 0, 1), "uniform").pvalue > 1e-3
        assert np.all(out[:, P:] == 0)  # magnitude and features untouched


def test_noise_is_unit_normal_and_independent():
    err = np.full((3, P), 0.02, np.float32)
    noise = TrainingNoise(noise_errors(err), [1e4, 1e4, 1e4], 100.0, seed=2)
    out = _noise_of(noise, 3000, key=9)
    z = out[:, :P] / out[:, :P].std(axis=1, keepdims=True)  # each row's own scale divided out
    assert stats.kstest(z[:, ::37].ravel(), "norm").pvalue > 1e-3
    assert abs(np.mean(z[:, 1:] * z[:, :-1])) < 0.01  # neighbouring pixels
    assert abs(np.corrcoef(z[0::2].ravel(), z[1::2].ravel())[0, 1]) < 0.01  # neighbouring rows of a batch
    # the same key reproduces a batch, another key does not
    np.testing.assert_array_equal(out, _noise_of(noise, 3000, key=9))
    assert not np.allclose(out, _noise_of(noise, 3000, key=10))


def test_masked_pixels_and_stars_below_the_floor_are_left_alone():
    err = np.full((2, P), 0.01, np.float32)
    err[0, :10] = np.nan
    err[0, 10:20] = 5.0  # APOGEE's masked pixels have huge errors
    noise = TrainingNoise(noise_errors(err), [300.0, 40.0], 50.0, seed=0)
    out = _noise_of(noise, 200, key=1)
    assert np.all(out[0::2, :20] == 0) and np.all(out[0::2, 20:P].std(axis=1) > 0)
    assert np.all(out[1::2] == 0)  # S/N 40 < floor 50


def test_same_law_as_the_calibration_degradation():
    """A star degraded to t by TrainingNoise and by calibration.degrade_spectra: the same noise variance."""
    rng = np.random.default_rng(0)
    err = rng.uniform(0.005, 0.02, (1, P)).astype(np.float32)
    snr, floor = 200.0, 199.0  # t is 199-200: almost fixed
    out = _noise_of(TrainingNoise(noise_errors(err), [snr], floor, seed=0), 3000, key=0)
    target = floor * (snr / floor) ** 0.5  # log-uniform in [floor, snr]: its median
    ref = degrade_spectra(np.zeros((3000, P)), np.repeat(err, 3000, 0), np.full(3000, snr), target, rng)
    assert (out[:, :P] / err).var() == pytest.approx((ref / err).var(), rel=0.05)


def test_spectra_snr_and_normalised_errors():
    spectra = np.ones((2, 6)) * 0.9
    err = np.array([[0.009] * 6, [0.018, 0.018, 0.018, 0.018, np.inf, 2.0]])
    np.testing.assert_allclose(spectra_snr(spectra, err), [100.0, 50.0])
    e = noise_errors(err, scale=np.full(6, 2.0))
    assert e.dtype == np.float16 and e[1, 4] == 0 and e[1, 5] == 0
    np.testing.assert_allclose(e[0], 0.0045, rtol=1e-3)


def test_bad_noise_options_are_refused():
    with pytest.raises(ValueError, match="floor"):
        TrainingNoise(np.zeros((2, 3)), [1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="snr"):
        TrainingNoise(np.zeros((2, 3)), [1.0], 50.0)
    with pytest.raises(ValueError, match="columns"):
        TrainingNoise(np.zeros((2, 3)), [1.0, 2.0], 50.0, columns=2)


def test_training_batches_draw_new_noise_each_epoch_and_keep_validation_clean():
    n = 40
    spectra = np.zeros((n, P + 1), np.float32)
    inputs = {"input": spectra, "labels_err": np.ones((n, 1))}
    labels = {"output": np.arange(n, dtype=np.float32)[:, None]}
    noise = TrainingNoise(noise_errors(np.full((n, P), 0.01)), np.full(n, 500.0), 50.0, seed=0, columns=P + 1)
    ds, _ = training_batches(inputs, labels, None, 8, 5, shuffle=True, seed=3, noise=noise)
    epochs = [np.concatenate([b[0]["input"].numpy()[..., 0] for b in ds]) for _ in range(2)]
    assert all(np.all(e[:, :P].std(axis=1) > 0) and np.all(e[:, P] == 0) for e in epochs)
    assert not np.allclose(epochs[0], epochs[1])
    again, _ = training_batches(inputs, labels, None, 8, 5, shuffle=True, seed=3, noise=noise)
    np.testing.assert_array_equal(np.concatenate([b[0]["input"].numpy()[..., 0] for b in again]), epochs[0])
    val, _ = training_batches(inputs, labels, None, 8, 5, shuffle=False)
    assert all(np.all(b[0]["input"].numpy() == 0) for b in val)


def test_fit_records_the_noise_floor_and_warns_without_errors(tmp_path):
    from _toy import N_PIX, toy_model, toy_survey

    from astronn_gaiacal.models import load
    from astronn_gaiacal.models.folders import read_plugin_config
    toy = toy_survey(300, seed=5, n_pixels=N_PIX, signal=0.2)
    spectra, plx, plx_err, mag = toy["spectra"], toy["parallax"], toy["parallax_error"], toy["mag"]
    net = toy_model(epochs=1)
    net.calibrate_at_fit = False
    with pytest.warns(TrainingNoiseWarning, match="spectra_err"):
        net.fit(spectra, plx, plx_err, magnitude=mag)
    assert net.training_noise_snr is None  # the folder would record what was done: spectra as given
    net = toy_model(epochs=1)
    net.calibrate_at_fit = False
    err = np.full(spectra.shape, 0.01, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingNoiseWarning)
        net.fit(spectra, plx, plx_err, magnitude=mag, spectra_err=err)
    with pytest.raises(ValueError, match="spectra_err has shape"):
        net.fit(spectra, plx, plx_err, magnitude=mag, spectra_err=err[:, :-3])
    folder = tmp_path / "m"
    net.save(str(folder))
    block = read_plugin_config(str(folder))
    assert block["training_noise_snr"] == net.training_noise_snr == 50.0
    assert load(str(folder)).training_noise_snr == 50.0


def test_fit_takes_pixel_errors_from_the_snr_alone():
    from _toy import N_PIX, toy_model

    net = toy_model()
    spec = np.full((3, N_PIX), 0.8, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingNoiseWarning)
        err, snr = net._training_noise_source(spec, None, np.array([100.0, 400.0, np.nan]), 3)
    np.testing.assert_allclose(err[:2], [[0.008] * N_PIX, [0.002] * N_PIX], rtol=1e-6)
    assert np.all(err[2] == 0)  # no S/N: no noise


def test_cli_train_records_the_noise_floor_and_takes_none(tmp_path, capsys):
    from _toy import N_PIX, toy_survey

    from astronn_gaiacal.cli import main
    from astronn_gaiacal.io.dataset import Dataset

    d = toy_survey(200, seed=8, n_pixels=N_PIX, signal=0.2)
    ds = Dataset(spectra=d["spectra"], spectra_err=np.full(d["spectra"].shape, 0.005, np.float32),
                 columns={"mag": d["mag"], "parallax": d["parallax"], "parallax_error": d["parallax_error"],
                          "snr": np.full(200, 200.0)},
                 units={"parallax": "mas", "parallax_error": "mas", "mag": "mag"}, attrs={"band": "Ks"})
    ds.write(str(tmp_path / "toy.h5"))
    for flag, expected in [([], 50.0), (["--training-noise-snr", "none"], None),
                           (["--training-noise-snr", "80"], 80.0)]:
        out = tmp_path / f"m{len(flag)}{expected}"
        argv = ["train", str(tmp_path / "toy.h5"), "--model", "ToyApogeeBCNN", "--ensemble", "1", "--epochs", "1",
                "--out", str(out), "--json", *flag]
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["training"]["training_noise_snr"] == expected
