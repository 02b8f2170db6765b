"""The paper's pretrained folders load on the modern stack; their zero-point comes out in uas."""
import json
import os
import shutil

import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal  # noqa: F401  (compatibility layer)
from astronn_gaiacal._compat import keras
from astronn_gaiacal.nn.inference import dropout_disabled
from astronn_gaiacal.models.paper import paper_zeropoint
from astroNN.models import ApogeeBCNN, ApogeeDR14GaiaDR2BCNN, load_folder

PAPER = os.path.join(os.path.dirname(__file__), "data", "paper_models")


def _make_paper_folder(name, dest, seed=0):
    """Copy the real metadata and write weights in astroNN's own h5 layout for that architecture."""
    folder = os.path.join(dest, name)
    shutil.copytree(os.path.join(PAPER, name), folder)
    with open(os.path.join(folder, "astroNN_model_parameter.json")) as f:
        params = json.load(f)
    cls = {"ApogeeDR14GaiaDR2BCNN": ApogeeDR14GaiaDR2BCNN, "ApogeeBCNN": ApogeeBCNN}[params["id"]]
    net = cls()
    net._input_shape = {"input": params["input"]}
    net._labels_shape = {"output": params["labels"]}
    net.num_hidden = params["hidden"]
    net.num_filters, net.filter_len, net.pool_length = params["filternum"], params["filterlen"], params["pool_length"]
    net._last_layer_activation = params["last_layer_activation"]
    net.input_mean = {"input": np.array(params["input_mean"])}
    net.compile()
    rng = np.random.default_rng(seed)
    net.keras_model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in net.keras_model.get_weights()])
    net.keras_model.save(os.path.join(folder, "model_weights.h5"))
    return folder, params, net.keras_model.get_weights()


def _numpy_offset(weights_by_layer, x_norm, labels_std):
    h = x_norm
    for kernel, bias in weights_by_layer:
        h = np.tanh(h @ kernel + bias)
    return h[:, 0] * labels_std


@pytest.mark.parametrize("name", ["astroNN_constant_model", "astroNN_multivariate_model", "astroNN_no_offset_model"])
def test_paper_folders_load_with_astronn_classes(tmp_path, name):
    folder, params, weights = _make_paper_folder(name, str(tmp_path))
    net = load_folder(folder)
    assert type(net).__name__ == params["id"]
    for a, b in zip(weights, net.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert net.labels_std["output"][0] == pytest.approx(params["labels_std"][0])
    net.mc_num = 2
    x = np.ones((2, params["input"][0]))
    if params["input"][0] == 7518:  # magnitude and the constant model's three ones
        x[:, 7514] = 9.5
    fakemag, err = net.predict(x)
    assert fakemag.shape == (2, 1) and set(err) == {"total", "model", "predictive"}


def _offset_layers(keras_model):
    """kernel/bias of the offset branch, from the layer feeding 'offset_output' back to the input."""
    layers, layer = [], keras_model.get_layer("offset_output")
    while isinstance(layer, (keras.layers.Dense,)) or "dropout" in layer.name.lower():
        if isinstance(layer, keras.layers.Dense):
            layers.append(layer.get_weights())
        layer = layer._inbound_nodes[0].inbound_layers
    return layers[::-1]


def test_constant_folder_zeropoint_by_hand(tmp_path):
    folder, params, _ = _make_paper_folder("astroNN_constant_model", str(tmp_path), seed=1)
    net = load_folder(folder)
    with dropout_disabled(net.keras_model):
        zp, err = paper_zeropoint(net, mc_num=3)
    assert zp.unit == u.uas and err.to_value(u.uas) == pytest.approx(0.0, abs=1e-6)
    # trained on mean-subtracted ones: the offset branch saw zeros
    expected = _numpy_offset(_offset_layers(net.keras_model), np.zeros((1, 3)), params["labels_std"][0])[0]
    assert zp.to_value(u.mas) == pytest.approx(expected, rel=1e-5)
    # the notebook's raw-ones evaluation gives a different number
    raw_ones = _numpy_offset(_offset_layers(net.keras_model), np.ones((1, 3)), params["labels_std"][0])[0]
    assert abs(raw_ones - expected) > 1e-4
    zp_mc, err_mc = paper_zeropoint(net, mc_num=200)
    assert err_mc > 0 * u.uas and np.isfinite(zp_mc)


def test_multivariate_folder_zeropoint_by_hand(tmp_path):
    folder, params, _ = _make_paper_folder("astroNN_multivariate_model", str(tmp_path), seed=2)
    net = load_folder(folder)
    feats = {"phot_g_mean_mag": np.array([12.0, 15.0, np.nan]), "bp_rp": np.array([1.2, 1.6, 1.4]),
             "teff": np.array([4800.0, 4500.0, 4700.0])}
    with dropout_disabled(net.keras_model):
        zp, _ = paper_zeropoint(net, feats, mc_num=2)
    mean = np.array(params["input_mean"][7515:])
    std = np.array(params["input_std"][7515:])
    raw = np.column_stack([feats["phot_g_mean_mag"], feats["bp_rp"], feats["teff"]])
    expected = _numpy_offset(_offset_layers(net.keras_model), (raw[:2] - mean) / std, params["labels_std"][0])
    np.testing.assert_allclose(zp[:2].to_value(u.mas), expected, rtol=1e-5)
    assert np.isnan(zp[2])
    with pytest.raises(ValueError, match="multivariate"):
        paper_zeropoint(net)
    with pytest.raises(KeyError, match="bp_rp"):
        paper_zeropoint(net, {"phot_g_mean_mag": [12.0], "teff": [4500.0]})
    with pytest.raises(TypeError, match="ApogeeDR14GaiaDR2BCNN"):
        paper_zeropoint(ApogeeBCNN())
