"""The shipped example subclasses and the documented user subclass round-trip through load_folder."""
import os
import runpy

import numpy as np
import pytest
from astropy import units as u

import astronn_gaiacal
from astronn_gaiacal.constants import DR3_OFFSET_FEATURES
from astronn_gaiacal.nn.inference import dropout_disabled
from astronn_gaiacal.models import ApogeeDR17GaiaDR3BCNN, DenseGaiaBNN
from astroNN.models import load_folder

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "my_survey_model.py")


def _same_network(a, b, x):
    for wa, wb in zip(a.keras_model.get_weights(), b.keras_model.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    with dropout_disabled(a.keras_model_predict), dropout_disabled(b.keras_model_predict):
        np.testing.assert_array_equal(a.keras_model_predict(a._normalise_spectra(x)).numpy(),
                                      b.keras_model_predict(b._normalise_spectra(x)).numpy())


def test_dr17_dr3_model_roundtrip(tmp_path, rng):
    n = 80
    spectra = 1 + 0.01 * rng.standard_normal((n, 7514))
    feats = {
        "nu_eff_used_in_astrometry": rng.uniform(1.4, 1.6, n),
        "pseudocolour": rng.uniform(1.3, 1.7, n),
        "ecl_lat": rng.uniform(-60, 60, n),
        "astrometric_params_solved": rng.choice([31.0, 95.0], n),
    }
    net = ApogeeDR17GaiaDR3BCNN()
    assert net.offset == "multivariate" and net.offset_features == list(DR3_OFFSET_FEATURES)
    net.max_epochs, net.verbose = 1, 0
    net.fit(spectra, rng.uniform(0.1, 2, n), np.full(n, 0.03), rng.uniform(8, 12, n), offset_features=feats)
    loaded = load_folder(net.save(str(tmp_path / "dr17")))
    assert type(loaded) is ApogeeDR17GaiaDR3BCNN and loaded.offset_features == list(DR3_OFFSET_FEATURES)
    assert loaded.gaia_release == "dr3"
    _same_network(net, loaded, spectra[:8])
    zp, zp_err = loaded.predict_zeropoint(feats, mc_num=5)
    assert zp.shape == (n,) and zp.unit == u.mas


def test_dense_low_dimensional_model_roundtrip(tmp_path, rng):
    n = 128
    labels = np.column_stack([rng.uniform(4000, 5200, n), rng.uniform(1.5, 3.5, n), rng.uniform(-1, 0.4, n)])
    net = DenseGaiaBNN(offset="constant", hidden=(32, 16))
    net.max_epochs, net.verbose = 2, 0
    net.fit(labels, rng.uniform(0.1, 2, n), np.full(n, 0.03), rng.uniform(8, 12, n))
    assert net.spectrum_length == 3 and net.hidden == [32, 16]
    loaded = load_folder(net.save(str(tmp_path / "dense")))
    assert type(loaded) is DenseGaiaBNN and loaded.spectrum_length == 3 and loaded.hidden == [32, 16]
    _same_network(net, loaded, labels[:10])
    # inputs are standardised, not only centred
    np.testing.assert_allclose(np.asarray(loaded.input_std["input"])[:3], labels.std(axis=0), rtol=1e-6)
    fakemag, err = loaded.predict(labels[:5])
    assert fakemag.shape == (5, 1) and np.all(fakemag > 0)


def test_documented_user_subclass(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(EXAMPLE, run_name="__main__")
    out = capsys.readouterr().out
    assert "MySurveyBCNN" in out
    cls = namespace["MySurveyBCNN"]
    import astroNN.models

    assert astroNN.models.MySurveyBCNN is cls
    reloaded = namespace["reloaded"]
    assert type(reloaded) is cls and reloaded.band == "J" and reloaded.spectrum_length == 2000
    value, error = reloaded.zeropoint()
    assert value.unit == u.uas and np.isfinite(value) and error >= 0
    assert os.path.isdir(tmp_path / "my_survey_model")
