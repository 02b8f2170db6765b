"""The paper's pretrained model folders (Leung & Bovy 2019) on the modern stack.

The folders ``astroNN_constant_model`` and ``astroNN_multivariate_model`` hold
astroNN's own ``ApogeeDR14GaiaDR2BCNN``; ``import astronn_gaiacal`` makes
``astroNN.models.load_folder`` load them on TensorFlow 2.16+.  astroNN has no
way to get the zero-point out of them; the paper did it in a notebook
(Offset_Gaia).  :func:`paper_zeropoint` does it here, with two fixes:

* it feeds the offset branch the *normalised* features, exactly what it saw in
  training (the notebook evaluated the constant model on raw ones, while it
  had been trained on mean-subtracted ones, i.e. zeros);
* it converts the normalised output to mas with the folder's ``labels_std``
  (``labels_norm_mode`` 4: parallax divided by its standard deviation).

Examples
--------
>>> import astronn_gaiacal
>>> from astroNN.models import load_folder
>>> from astronn_gaiacal.models.paper import paper_zeropoint
>>> net = load_folder("astroNN_constant_model")  # doctest: +SKIP
>>> paper_zeropoint(net)                          # doctest: +SKIP
(<Quantity -52.3 uas>, <Quantity 2.0 uas>)
"""
import numpy as np
from astroNN.models import ApogeeDR14GaiaDR2BCNN
from astroNN.nn.layers import MCDropout
from astroNN.nn.utilities import Normalizer
from astropy import units as u

from .._compat import keras
from ..constants import PAPER_MAG_COLUMN, PAPER_OFFSET_FEATURES, is_missing
from ..nn.inference import mc_predict
from .apogee import ApogeeGaiaBCNN

#: offset-branch input columns of the paper's 7518-column layout
PAPER_FEATURE_COLUMNS = slice(PAPER_MAG_COLUMN + 1, None)


def _offset_branch(net):
    if not isinstance(net, ApogeeDR14GaiaDR2BCNN):
        raise TypeError(f"paper_zeropoint needs astroNN's ApogeeDR14GaiaDR2BCNN, got {type(net).__name__}")
    net.has_model_check()
    model = net.keras_model
    return keras.Model(model.get_layer("input").input, model.get_layer("offset_output").output)


def _paper_features(net, features, n_aux):
    mean = np.asarray(net.input_mean["input"], dtype=float).ravel()
    std = np.asarray(net.input_std["input"], dtype=float).ravel()
    aux_mean = mean[PAPER_FEATURE_COLUMNS]
    aux_std = std[PAPER_FEATURE_COLUMNS] if std.size > 1 else np.ones(n_aux)
    if features is None:
        if not np.allclose(aux_mean, 1.0):
            raise ValueError(
                "this folder is a multivariate model: give features (G, BP-RP, Teff) for the stars you want"
            )
        raw = np.ones((1, n_aux))
    elif hasattr(features, "colnames") or hasattr(features, "columns") or isinstance(features, dict):
        available = list(getattr(features, "colnames", None) or list(getattr(features, "columns", features)))
        missing = [n for n in PAPER_OFFSET_FEATURES if n not in available]
        if missing:
            raise KeyError(f"feature column(s) {missing} missing; the paper's model needs {list(PAPER_OFFSET_FEATURES)}")
        raw = np.column_stack([np.asarray(features[n], dtype=float) for n in PAPER_OFFSET_FEATURES])
    else:
        raw = np.atleast_2d(np.asarray(features, dtype=float))
        if raw.shape[1] != n_aux:
            raise ValueError(f"features has {raw.shape[1]} columns; the model's offset branch takes {n_aux}")
    return raw, (raw - aux_mean) / aux_std


def paper_zeropoint(net, features=None, mc_num=100, batch_size=1024):
    """Zero-point from one of the paper's ``ApogeeDR14GaiaDR2BCNN`` folders.

    Parameters
    ----------
    net : astroNN.models.ApogeeDR14GaiaDR2BCNN
        As returned by ``astroNN.models.load_folder``.
    features : ndarray (N, 3), Table, DataFrame or dict, optional
        G, BP-RP and Teff for the multivariate model; omit for the constant model.
    mc_num : int
        MC-dropout passes.

    Returns
    -------
    zeropoint, zeropoint_error : Quantity [uas]
        Scalars for the constant model, shape (N,) otherwise; NaN where a
        feature is NaN/-9999.  Convention: parallax_gaia = parallax_true + zeropoint.
    """
    branch = _offset_branch(net)
    width = int(branch.input_shape[1])
    n_aux = width - (PAPER_MAG_COLUMN + 1)
    raw, normed = _paper_features(net, features, n_aux)
    bad = is_missing(raw).any(axis=1)
    x = np.zeros((raw.shape[0], width), np.float32)
    x[:, PAPER_FEATURE_COLUMNS] = np.where(bad[:, None], 0.0, normed)
    mean, var = mc_predict(branch, x[..., None], mc_num=mc_num, batch_size=batch_size, progress=False)
    scale = float(np.asarray(net.labels_std["output"]).ravel()[0])
    zp = np.where(bad, np.nan, mean[:, 0] * scale) * u.mas
    err = np.where(bad, np.nan, np.sqrt(var[:, 0]) * scale) * u.mas
    if features is None:
        return zp[0].to(u.uas), err[0].to(u.uas)
    return zp.to(u.uas), err.to(u.uas)


def _offset_chain(model):
    """Dense layers of the offset branch, input side first, found by walking back from 'offset_output'."""
    chain, layer = [], model.get_layer("offset_output")
    while isinstance(layer, (keras.layers.Dense, MCDropout)):
        if isinstance(layer, keras.layers.Dense):
            chain.append(layer)
        layer = layer._inbound_nodes[0].inbound_layers
    return chain[::-1]


def transfer_astronn_weights(astronn_net, plugin_net):
    """Copy the weights of astroNN's ``ApogeeDR14GaiaDR2BCNN`` into a plugin joint model.

    The layers are matched by role (convolutions, luminosity dense layers, the
    two heads, the offset branch), not by position: astroNN builds the offset
    branch first, the plugin builds it as a separate sub-model.  For a
    ``'constant'`` plugin model, astroNN's three-ones offset input (normalised
    to zeros in training) becomes the plugin's in-graph ones with a zero
    first-layer kernel, which reproduces the training-time offset exactly.

    Parameters
    ----------
    astronn_net : astroNN.models.ApogeeDR14GaiaDR2BCNN
        Built (trained or loaded) astroNN model.
    plugin_net : GaiaCalBCNNBase
        Built plugin model with the same architecture.

    Raises
    ------
    ValueError
        If a layer's weight shapes differ (different architecture).
    """
    src, dst = astronn_net.keras_model, plugin_net.keras_model
    if src is None or dst is None:
        raise ValueError("both models must be built (trained, loaded or compiled) before transferring weights")
    heads = ("fakemag_output", "fakemag_variance_output")
    src_offset = _offset_chain(src) if plugin_net.offset != "none" else []
    src_conv = [lay for lay in src.layers if isinstance(lay, keras.layers.Conv1D)]
    src_dense = [lay for lay in src.layers if isinstance(lay, keras.layers.Dense)
                 and lay not in src_offset and lay.name not in heads and lay.name != "offset_output"]
    lum = plugin_net.luminosity_model
    dst_conv = [lay for lay in lum.layers if isinstance(lay, keras.layers.Conv1D)]
    dst_dense = [lay for lay in lum.layers if isinstance(lay, keras.layers.Dense) and lay.name not in heads]
    pairs = list(zip(src_conv, dst_conv)) + list(zip(src_dense, dst_dense))
    pairs += [(src.get_layer(h), lum.get_layer(h)) for h in heads]
    if len(src_conv) != len(dst_conv) or len(src_dense) != len(dst_dense):
        raise ValueError(
            f"architectures differ: astroNN has {len(src_conv)} conv / {len(src_dense)} dense layers, "
            f"the plugin model {len(dst_conv)} / {len(dst_dense)}"
        )
    constant_input_layer = None
    if plugin_net.offset != "none":
        dst_offset = [lay for lay in plugin_net.offset_model.layers if isinstance(lay, keras.layers.Dense)]
        if len(src_offset) != len(dst_offset):
            raise ValueError(f"offset branches differ: {len(src_offset)} vs {len(dst_offset)} dense layers")
        pairs += list(zip(src_offset, dst_offset))
        if plugin_net.offset == "constant":
            aux_mean = np.asarray(astronn_net.input_mean["input"], dtype=float).ravel()[PAPER_FEATURE_COLUMNS]
            if not np.allclose(aux_mean, 1.0):
                raise ValueError("a constant plugin model needs an astroNN model trained on constant (ones) offset inputs")
            constant_input_layer = dst_offset[0]
    for a, b in pairs:
        weights = a.get_weights()
        if b is constant_input_layer:  # ones minus their mean 1: the branch saw zeros in training
            weights = [np.zeros_like(b.get_weights()[0]), weights[1]]
        shapes_a = [w.shape for w in weights]
        shapes_b = [w.shape for w in b.get_weights()]
        if shapes_a != shapes_b:
            raise ValueError(f"layer {a.name} -> {b.name}: weight shapes {shapes_a} vs {shapes_b}")
        b.set_weights(weights)


def astronn_twin(n_pixels=7514, seed=0, mag_mean=9.3):
    """astroNN 1.1.0's ``ApogeeDR14GaiaDR2BCNN`` with random weights, and the plugin's twin of it.

    The twin is an :class:`~astronn_gaiacal.models.ApogeeGaiaBCNN` in astroNN mode
    (``variance_propagation='astronn'``, tanh offset output) holding the same
    weights (:func:`transfer_astronn_weights`), so both give the same numbers:
    the reference for equivalence tests and speed benchmarks.

    Parameters
    ----------
    n_pixels : int
        Spectrum length (7514 for APOGEE).
    seed : int
        Seed of the Gaussian (sigma 0.05) weights.
    mag_mean : float
        Mean magnitude of the input normalisation (spectra are centred on 1).

    Returns
    -------
    theirs : astroNN.models.ApogeeDR14GaiaDR2BCNN
        Input layout ``[spectrum | magnitude | 3 ones]``; labels unnormalised.
    ours : ApogeeGaiaBCNN
        Input layout ``[spectrum | magnitude]``.
    """
    rng = np.random.default_rng(seed)
    width = n_pixels + 4
    mean = np.r_[np.ones(n_pixels), mag_mean, 1.0, 1.0, 1.0]
    theirs = ApogeeDR14GaiaDR2BCNN()
    theirs.verbose = 0
    theirs._input_shape, theirs._labels_shape = {"input": (width, 1)}, {"output": 1}
    theirs.num_hidden = [164, 64, 32, 16]
    theirs.input_mean, theirs.input_std = {"input": mean}, {"input": np.ones(width)}
    theirs.labels_mean, theirs.labels_std = {"output": np.array([0.0])}, {"output": np.array([1.0])}
    theirs.compile()
    theirs.keras_model.set_weights(
        [rng.normal(0, 0.05, w.shape).astype(np.float32) for w in theirs.keras_model.get_weights()]
    )
    theirs.input_normalizer = Normalizer(mode=theirs.input_norm_mode, verbose=0)
    theirs.input_normalizer.mean_labels, theirs.input_normalizer.std_labels = theirs.input_mean, theirs.input_std
    theirs.labels_normalizer = Normalizer(mode=4, verbose=0)
    theirs.labels_normalizer.mean_labels, theirs.labels_normalizer.std_labels = theirs.labels_mean, theirs.labels_std

    ours = ApogeeGaiaBCNN(offset="constant", variance_propagation="astronn", offset_output_activation="tanh")
    ours.verbose = 0
    ours._input_shape, ours._labels_shape = {"input": (n_pixels + 1, 1)}, {"output": 1}
    ours.input_mean, ours.input_std = {"input": mean[: n_pixels + 1]}, {"input": np.ones(n_pixels + 1)}
    ours.labels_std = {"output": np.array([1.0])}
    ours.compile()
    transfer_astronn_weights(theirs, ours)
    return theirs, ours
