"""The compatibility layer makes astroNN 1.1.0 usable on the installed TensorFlow."""
import os
import subprocess
import sys

import numpy as np
import pytest

from astronn_gaiacal._compat import USES_TF_KERAS


def _clean_env():
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(), timeout=300)


def test_import_sets_up_keras2_for_astronn():
    res = _run(
        "import astronn_gaiacal, astroNN.models, tensorflow as tf, os\n"
        "from astronn_gaiacal._compat import keras\n"
        "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
        "print(tf.__version__, tf.keras.__version__, tf.keras.Model is keras.Model, keras.__name__)\n"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    tf_version, keras_version, same, keras_module = res.stdout.split()[-4:]
    assert keras_version.startswith("2.") and same == "True"
    # TF >= 2.16 must be routed through the tf-keras package; older TF has Keras 2 built in
    if tuple(int(p) for p in tf_version.split(".")[:2]) >= (2, 16):
        assert keras_module == "tf_keras"
    else:
        assert keras_module.startswith("keras.")


@pytest.mark.skipif(not USES_TF_KERAS, reason="TensorFlow < 2.16 has no Keras 3 mode")
def test_keras3_already_bound_gives_clear_import_error():
    res = _run("import tensorflow as tf\ntf.keras.Model\nimport astronn_gaiacal\n")
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:")
    assert "TF_USE_LEGACY_KERAS=1" in last and "Keras 3" in last


@pytest.mark.skipif(USES_TF_KERAS, reason="TensorFlow >= 2.16 binds tf.keras to Keras 3 unless told otherwise")
def test_keras_touched_first_is_fine_on_builtin_keras2():
    res = _run("import tensorflow as tf\ntf.keras.Model\nimport astronn_gaiacal\nprint(tf.keras.__version__)\n")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1].startswith("2.")


def test_tensorflow_imported_but_keras_untouched_is_fine():
    res = _run("import tensorflow as tf\nimport astronn_gaiacal\nprint(tf.keras.__version__)\n")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1].startswith("2.")


def test_show_versions_states_ranges(capsys):
    import astronn_gaiacal
    from astronn_gaiacal._versions import SUPPORTED

    astronn_gaiacal.show_versions()
    out = capsys.readouterr().out
    for dist, spec in SUPPORTED.items():
        assert dist in out and spec in out


def test_installed_versions_satisfy_declared_ranges():
    """Every declared requirement is installed within its range (tox envs that install with --no-deps too)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    from astronn_gaiacal._versions import install_requires

    checked = []
    for line in install_requires():
        req = Requirement(line)
        if req.name == "tf-keras" and not USES_TF_KERAS:
            continue  # TensorFlow < 2.16 has Keras 2 built in
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} not in {req.specifier}"
        checked.append(req.name)
    assert {"astroNN", "tensorflow", "tensorflow-probability", "numpy"} <= set(checked)


def test_astronn_own_gaia_model_trains_saves_loads_predicts(tmp_path, rng):
    """astroNN's ApogeeDR14GaiaDR2BCNN: fit one epoch, save, load_folder, predict (mc_num=2)."""
    import astronn_gaiacal  # noqa: F401
    from astroNN.models import ApogeeDR14GaiaDR2BCNN, load_folder

    n = 96
    x = rng.normal(1.0, 0.05, (n, 7518)).astype(np.float32)
    x[:, 7514] = rng.uniform(8, 11, n)
    x[:, 7515:] = 1.0
    y = rng.normal(1.0, 0.3, (n, 1))
    net = ApogeeDR14GaiaDR2BCNN()
    net.max_epochs = 1
    net.verbose = 0
    net.fit(x, y, labels_err=np.full((n, 1), 0.05))
    assert np.isfinite(net.history.history["loss"][0])
    folder = str(tmp_path / "astronn_model")
    net.save(folder)
    loaded = load_folder(folder)
    assert type(loaded) is ApogeeDR14GaiaDR2BCNN
    for a, b in zip(net.keras_model.get_weights(), loaded.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    loaded.mc_num = 2
    pred, err = loaded.predict(x[:5])
    assert pred.shape == (5, 1) and set(err) == {"total", "model", "predictive"}
    assert np.all(np.isfinite(pred)) and np.all(err["total"] >= err["predictive"])
