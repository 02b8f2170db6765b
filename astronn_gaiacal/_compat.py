"""Make astroNN 1.1.0 work on the installed TensorFlow.

astroNN 1.1.0 is written against Keras 2 (``tf.keras``).  TensorFlow >= 2.16
routes ``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before
``tf.keras`` is first touched, in which case it routes to the ``tf-keras``
package.  This module, imported first by the package, does exactly that and
then exposes the Keras 2 API as :data:`keras`, the only handle the rest of the
package uses.  A future port to Keras 3 changes this module only.

Importing this module is cheap: it only sets ``TF_USE_LEGACY_KERAS=1`` (and
refuses a process whose ``tf.keras`` is already Keras 3).  TensorFlow itself is
imported on first use of one of the names in ``__all__`` (module
``__getattr__``), so ``import astronn_gaiacal`` and the command line's parsing
stay fast; :func:`load` is called, through :func:`on_import`, right before
astroNN is first imported, so astroNN always sees Keras 2.

:func:`on_import` runs code around the execution of a named module (a
``sys.meta_path`` finder): the package registers its components right after
``astroNN.models`` is imported (``astronn_gaiacal/__init__.py``), and the
command line silences TensorFlow's start-up lines (:func:`quiet_tensorflow`).
"""
import contextlib
import importlib.abc
import logging
import os
import sys
import threading
import warnings

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


_activate_legacy_keras()

#: Names this module provides once TensorFlow is imported (:func:`load`).
_LAZY = ("tf", "keras", "TF_VERSION", "KERAS_VERSION", "USES_TF_KERAS", "KERAS_ROUTE")
_LOAD_LOCK = threading.RLock()


def load():
    """Import TensorFlow, bind the Keras 2 API and set this module's names.

    Called on first use of :data:`keras`, :data:`tf` and the version names, and
    right before astroNN is first imported.  Safe to call again.
    """
    with _LOAD_LOCK:
        if "keras" in globals():
            return
        _activate_legacy_keras()
        import tensorflow as tf

        tf_version = tuple(int(p) for p in tf.__version__.split(".")[:2])
        # True where TensorFlow has a Keras 3 mode (TF >= 2.16): Keras 2 then comes from the separate
        # ``tf-keras`` package.  False on older TensorFlow, whose built-in ``tf.keras`` is Keras 2.
        uses_tf_keras = tf_version >= (2, 16)
        if uses_tf_keras:
            try:
                import tf_keras as keras
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
            from tensorflow import keras
        globals().update(
            tf=tf,
            TF_VERSION=tf_version,
            USES_TF_KERAS=uses_tf_keras,
            KERAS_ROUTE="tf-keras, TF_USE_LEGACY_KERAS=1" if uses_tf_keras else "built-in Keras 2",
            KERAS_VERSION=keras.__version__,
            keras=keras,  # last: its presence means "loaded"
        )


def __getattr__(name):
    if name in _LAZY:
        load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _ImportHooks(importlib.abc.MetaPathFinder):
    """Runs callbacks around the execution of named modules; finds nothing itself."""

    def __init__(self):
        self.hooks = {}

    def find_spec(self, fullname, path=None, target=None):
        hooks = self.hooks.get(fullname)
        if not hooks:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_with_hooks(module):
            with contextlib.ExitStack() as stack:
                for context in list(hooks["around"]):
                    stack.enter_context(context())
                for before in list(hooks["before"]):
                    before()
                exec_module(module)
            for after in list(hooks["after"]):
                after(module)

        loader.exec_module = exec_with_hooks  # this spec's own loader instance
        return spec


_HOOKS = _ImportHooks()
_HOOKS_LOCK = threading.RLock()


def on_import(name, *, before=None, after=None, around=None):
    """Run code around the first execution of module ``name``.

    Parameters
    ----------
    name : str
        Full module name, e.g. ``"astroNN.models"``.
    before : callable, optional
        ``before()``, right before the module's code runs.
    after : callable, optional
        ``after(module)``, right after it ran (the import has not returned
        yet).  If the module is already imported, ``after`` runs at once.
    around : callable, optional
        A context-manager factory entered around the module's execution.
    """
    with _HOOKS_LOCK:
        if name in sys.modules:
            if after is not None:
                after(sys.modules[name])
            return
        hooks = _HOOKS.hooks.setdefault(name, {"before": [], "after": [], "around": []})
        for key, func in (("before", before), ("after", after), ("around", around)):
            if func is not None and func not in hooks[key]:
                hooks[key].append(func)
        if _HOOKS not in sys.meta_path:
            sys.meta_path.insert(0, _HOOKS)


# astroNN binds tf.keras when it is imported: Keras 2 must be set up by then.
on_import("astroNN", before=load)
if "tensorflow" in sys.modules:  # already paid for: bind Keras 2 now
    load()


#: Set by :func:`quiet_tensorflow` and inherited by worker processes, which
#: then silence TensorFlow's start-up too.  Internal; the command line sets it.
QUIET_ENV = "ASTRONN_GAIACAL_QUIET_TF"

#: Modules whose Python warnings the command line hides unless ``--verbose``.
NOISY_MODULES = r"(tensorflow|tf_keras|keras|tensorflow_probability|astroNN|absl|h5py|google\.protobuf)(\.|$)"


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null: TensorFlow's C++ lines written before absl logging starts."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quiet_loggers(_module=None):
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing warnings
    absl = sys.modules.get("absl.logging")
    if absl is not None:
        absl.set_verbosity(absl.ERROR)


def quiet_tensorflow():
    """Silence TensorFlow's start-up lines, log messages and third-party warnings.

    For applications (the command line calls it unless ``--verbose``); the
    library itself never changes the process's logging.  Sets
    ``TF_CPP_MIN_LOG_LEVEL=3`` unless already set, hides what TensorFlow's
    shared libraries write to stderr while ``tensorflow`` is imported (lines
    that no log level reaches), sets the ``tensorflow`` logger to ERROR and
    ignores Python warnings raised in :data:`NOISY_MODULES`.  Worker processes
    started afterwards do the same (:data:`QUIET_ENV`).
    """
    os.environ[QUIET_ENV] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", module=NOISY_MODULES)
    _quiet_loggers()
    on_import("tensorflow", around=_stderr_silenced, after=_quiet_loggers)
    on_import("absl.logging", after=_quiet_loggers)


if os.environ.get(QUIET_ENV) == "1":  # a worker process of a quiet command
    quiet_tensorflow()


__all__ = [*_LAZY, "load", "on_import", "quiet_tensorflow"]
