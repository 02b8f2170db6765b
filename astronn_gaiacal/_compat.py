"""Make astroNN 1.1.0 work on the installed TensorFlow.

astroNN 1.1.0 is written against Keras 2 (``tf.keras``).  TensorFlow >= 2.16
routes ``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before
``tf.keras`` is first touched, in which case it routes to the ``tf-keras``
package.  This module, imported first by the package, does exactly that and
then exposes the Keras 2 API as :data:`keras`, the only handle the rest of the
package uses.  A future port to Keras 3 changes this module only.
"""
import os
import sys

_REMEDY = (
    "astronn_gaiacal (through astroNN 1.1.0) needs the Keras 2 API, but "
    "TensorFlow's tf.keras was already bound to Keras 3 in this process. "
    "Remedy: set the environment variable TF_USE_LEGACY_KERAS=1 before Python "
    "starts (e.g. `export TF_USE_LEGACY_KERAS=1`), or import astronn_gaiacal "
    "before tensorflow/keras, and make sure `tf-keras` matching your TensorFlow "
    "version is installed (pip install 'tf-keras~={tfver}')."
)


def _keras_already_bound_to_keras3(tf_module):
    bound = tf_module.__dict__.get("keras")
    if bound is None:
        return False
    state = vars(bound)
    if "_tfll_initialized" in state:  # TF >= 2.16 lazy loader, not yet replaced by a module
        return bool(state["_tfll_initialized"]) and state.get("_tfll_keras_version") == "keras_3"
    # resolved: Keras 3 lives at keras._tf_keras.keras; tf-keras and TF < 2.16 are Keras 2
    return str(state.get("__name__", "")).startswith("keras._tf_keras") or str(
        state.get("__version__", "")
    ).startswith("3.")


def _activate_legacy_keras():
    tf_module = sys.modules.get("tensorflow")
    if tf_module is not None and _keras_already_bound_to_keras3(tf_module):
        raise ImportError(_REMEDY.format(tfver=getattr(tf_module, "__version__", "?")[:4]))
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_activate_legacy_keras()

import tensorflow as tf  # noqa: E402

TF_VERSION = tuple(int(p) for p in tf.__version__.split(".")[:2])

#: True where TensorFlow has a Keras 3 mode (TF >= 2.16): Keras 2 then comes
#: from the separate ``tf-keras`` package.  False on older TensorFlow, whose
#: built-in ``tf.keras`` is Keras 2.  The only TensorFlow-version switch.
USES_TF_KERAS = TF_VERSION >= (2, 16)

#: How ``tf.keras`` reaches Keras 2 on this install (for :func:`show_versions`).
KERAS_ROUTE = "tf-keras, TF_USE_LEGACY_KERAS=1" if USES_TF_KERAS else "built-in Keras 2"

if USES_TF_KERAS:
    try:
        import tf_keras as keras  # noqa: E402
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"TensorFlow {tf.__version__} needs the `tf-keras` package for "
            f"astroNN: pip install 'tf-keras~={tf.__version__[:4]}'"
        ) from err
    if getattr(tf.keras, "__version__", None) is None:
        # astroNN reads tf.keras.__version__, which the tf-keras route lacks
        tf.keras.__version__ = keras.__version__
    if _keras_already_bound_to_keras3(tf):  # pragma: no cover - defensive
        raise ImportError(_REMEDY.format(tfver=tf.__version__[:4]))
else:
    from tensorflow import keras  # noqa: E402,F401

KERAS_VERSION = keras.__version__

__all__ = ["tf", "keras", "TF_VERSION", "KERAS_VERSION", "USES_TF_KERAS", "KERAS_ROUTE"]
