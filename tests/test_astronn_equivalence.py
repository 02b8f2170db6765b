"""The plugin's APOGEE model in astroNN mode reproduces astroNN 1.1.0's ApogeeDR14GaiaDR2BCNN number for number."""
import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.nn.inference import dropout_disabled
from astronn_gaiacal.models import ApogeeGaiaBCNN
from astronn_gaiacal.models.paper import transfer_astronn_weights
from astroNN.models import ApogeeDR14GaiaDR2BCNN


def _build_pair(offset, rng, **plugin_kwargs):
    width = 7518
    mean = np.r_[rng.normal(1, 0.02, 7514), 9.3, 1.0, 1.0, 1.0] if offset == "constant" else np.r_[
        rng.normal(1, 0.02, 7514), 9.3, 13.0, 1.4, 4700.0]
    theirs = ApogeeDR14GaiaDR2BCNN()
    theirs._input_shape, theirs._labels_shape = {"input": (width, 1)}, {"output": 1}
    theirs.num_hidden = [164, 64, 32, 16]
    theirs.input_mean = {"input": mean}
    theirs.disable_dropout = True
    theirs.compile()
    theirs.keras_model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in theirs.keras_model.get_weights()])
    ours = ApogeeGaiaBCNN(offset=offset, **plugin_kwargs)
    n_input = 7514 + 1 + (3 if offset == "multivariate" else 0)
    ours._input_shape, ours._labels_shape = {"input": (n_input, 1)}, {"output": 1}
    ours.input_mean = {"input": mean[:n_input]}
    ours.input_std = {"input": np.ones(n_input)}
    ours.labels_std = {"output": np.array([1.0])}
    ours.disable_dropout = True
    ours.compile()
    transfer_astronn_weights(theirs, ours)
    return theirs, ours


def test_astronn_mode_reproduces_astronn_number_for_number(rng):
    theirs, ours = _build_pair("multivariate", rng, variance_propagation="astronn", offset_output_activation="tanh")
    x = np.concatenate([rng.normal(0, 0.02, (6, 7514)), rng.normal(0, 1, (6, 1)), rng.normal(0, 1, (6, 3))], axis=1)
    x = x[..., None].astype(np.float32)
    plx_a, var_a = [t.numpy() for t in theirs.keras_model([x, np.zeros((6, 1), np.float32)])]
    plx_b, var_b = [t.numpy() for t in ours.keras_model(x)]
    np.testing.assert_allclose(plx_b, plx_a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(var_b, var_a, rtol=1e-5, atol=1e-6)
    # the prediction model (fakemag and its log-variance) too
    pred_a = theirs.keras_model_predict(x).numpy()
    pred_b = ours.keras_model_predict(x[:, :7514, 0]).numpy()
    np.testing.assert_allclose(pred_b, pred_a, rtol=1e-5, atol=1e-6)


def test_exact_mode_differs_only_in_the_variance(rng):
    theirs, ours = _build_pair("multivariate", rng, offset_output_activation="tanh")
    x = np.concatenate([rng.normal(0, 0.02, (4, 7514)), rng.normal(0, 1, (4, 4))], axis=1)[..., None].astype(np.float32)
    plx_a, var_a = [t.numpy() for t in theirs.keras_model([x, np.zeros((4, 1), np.float32)])]
    plx_b, var_b = [t.numpy() for t in ours.keras_model(x)]
    np.testing.assert_allclose(plx_b, plx_a, rtol=1e-5, atol=1e-7)
    assert not np.allclose(var_a, var_b)


def test_constant_paper_model_converts_exactly(rng):
    """astroNN's constant model saw zeros in its offset input; the plugin's constant offset equals that."""
    theirs, ours = _build_pair("constant", rng, variance_propagation="astronn", offset_output_activation="tanh")
    x = np.concatenate([rng.normal(0, 0.02, (3, 7514)), rng.normal(0, 1, (3, 1)), np.zeros((3, 3))], axis=1)
    x = x[..., None].astype(np.float32)
    plx_a, _ = [t.numpy() for t in theirs.keras_model([x, np.zeros((3, 1), np.float32)])]
    plx_b, _ = [t.numpy() for t in ours.keras_model(x[:, :7515])]
    np.testing.assert_allclose(plx_b, plx_a, rtol=1e-5, atol=1e-7)


def test_architecture_mismatch_is_reported(rng):
    theirs, _ = _build_pair("multivariate", rng)
    other = ApogeeGaiaBCNN(offset="multivariate")
    other.num_hidden = [100, 64, 32, 16]
    other._input_shape, other._labels_shape = {"input": (7518, 1)}, {"output": 1}
    other.input_mean, other.input_std = {"input": np.ones(7518)}, {"input": np.ones(7518)}
    other.compile()
    with pytest.raises(ValueError, match="weight shapes"):
        transfer_astronn_weights(theirs, other)
