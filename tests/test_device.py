"""The device-aware choice between the fused Numba kernels and TensorFlow (astronn_gaiacal.nn.device)."""
import json
import os
import subprocess
import sys

import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.nn import device
from astronn_gaiacal.nn.device import FusedKernelsUnavailable, use_fused_kernels

HERE = os.path.dirname(os.path.abspath(__file__))


def _toy_compiled(**attrs):
    sys.path.insert(0, HERE)
    from _toy import compiled_toy

    return compiled_toy(0.0, **attrs)


@pytest.mark.skipif(not device.numba_available(), reason="needs Numba (the fast extra)")
def test_cpu_with_numba_uses_the_fused_kernels(monkeypatch):
    monkeypatch.setattr(device, "gpu_visible", lambda: False)
    assert use_fused_kernels(None, "training") and use_fused_kernels(None, "inference")
    assert _toy_compiled()._fused_stacks


def test_a_visible_gpu_selects_tensorflow(monkeypatch):
    monkeypatch.setattr(device, "gpu_visible", lambda: True)
    assert not use_fused_kernels(None, "training") and not use_fused_kernels(None, "inference")
    assert not _toy_compiled()._fused_stacks
    if device.numba_available():
        assert _toy_compiled(train_fused=True)._fused_stacks  # an explicit option overrides the device


def test_without_numba_tensorflow_runs_with_one_warning(monkeypatch):
    monkeypatch.setattr(device, "gpu_visible", lambda: False)
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setattr(device, "_WARNED", [])
    with pytest.warns(RuntimeWarning, match="Numba is not installed"):
        assert not use_fused_kernels(None, "training")
    with _no_warning():
        assert not use_fused_kernels(None, "inference")  # warned once per process
    with pytest.raises(FusedKernelsUnavailable, match="train_fused = False"):
        use_fused_kernels(True, "training")


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.records = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not [r for r in self.records if issubclass(r.category, RuntimeWarning)]


_SCRIPT = r"""
import sys, json, warnings
sys.modules["numba"] = None          # as if Numba were not installed
sys.path.insert(0, {here!r})
import numpy as np
import astronn_gaiacal
from astronn_gaiacal._compat import keras
from _toy import ToyApogeeBCNN, toy_survey, N_PIX
keras.utils.set_random_seed(0)
data = toy_survey(300, seed=1, n_pixels=N_PIX)
net = ToyApogeeBCNN(offset="constant")
net.max_epochs, net.verbose = 1, 0
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    net.fit(data["spectra"], data["parallax"], data["parallax_error"], magnitude=data["mag"])
    net.mc_num = 10
    fakemag, err = net.predict(data["spectra"][:20])
    # the offset network's path (a Dense/MCDropout chain: the fused_dense kernel when Numba is there)
    from astronn_gaiacal.nn.inference import mc_predict
    inp = keras.Input((3,))
    h = astronn_gaiacal.nn.layers.FastMCDropout(0.3)(keras.layers.Dense(8, activation="tanh")(inp))
    chain = keras.Model(inp, keras.layers.Dense(1)(h))
    zp_mean, zp_var = mc_predict(chain, np.random.default_rng(0).normal(size=(50, 3)), mc_num=20, progress=False)
print(json.dumps({{"fused": bool(net._fused_stacks), "finite": bool(np.all(np.isfinite(fakemag))),
                  "chain": bool(np.all(np.isfinite(zp_mean)) and np.all(zp_var > 0)),
                  "positive": bool(np.all(fakemag > 0)), "numba_loaded": "numba" in sys.modules and sys.modules["numba"] is not None,
                  "warnings": [str(r.message) for r in rec if "Numba" in str(r.message)]}}))
"""


def test_training_and_prediction_run_without_numba(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(here=HERE)], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["fused"] and result["finite"] and result["positive"] and not result["numba_loaded"]
    assert result["chain"]
    assert len(result["warnings"]) == 1
