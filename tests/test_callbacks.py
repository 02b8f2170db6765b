"""Weight averaging at the end of astroNN's fit loop."""
import json
import os

import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal._compat import keras
from astronn_gaiacal.models import load
from astronn_gaiacal.nn.callbacks import WeightAveraging

from _toy import N_PIX, toy_model, toy_survey


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_final_weights_are_the_mean_of_the_last_epochs(tmp_path):
    data = toy_survey(200, seed=2, n_pixels=N_PIX, zeropoint=-0.1)
    keras.utils.set_random_seed(4)
    net = toy_model(epochs=6)
    net.weight_averaging = 0.5  # epochs 3, 4, 5 (0-based)
    recorder = _Recorder()
    net.callbacks = [recorder]
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
    assert net.callbacks == [recorder]  # the averaging callback was only added for this fit
    expected = [np.mean([w[i] for w in recorder.weights[3:]], axis=0) for i in range(len(recorder.weights[0]))]
    for got, want, last in zip(net.keras_model.get_weights(), expected, recorder.weights[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(w, x) for w, x in zip(expected, recorder.weights[-1]))  # not the last iterate
    folder = net.save(str(tmp_path / "m"))
    with open(os.path.join(folder, "astroNN_model_parameter.json")) as f:
        assert json.load(f)["astronn_gaiacal"]["weight_averaging"] == 0.5
    assert load(folder).weight_averaging == 0.5


def test_bad_settings():
    with pytest.raises(ValueError, match="start_epoch"):
        WeightAveraging(-1)
    data = toy_survey(100, seed=2, n_pixels=N_PIX)
    net = toy_model(epochs=2)
    net.weight_averaging = 1.0
    with pytest.raises(ValueError, match="weight_averaging must be a fraction"):
        net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
