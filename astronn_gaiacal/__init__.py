"""astronn_gaiacal: joint spectro-photometric distances and Gaia parallax zero-point.

An astroNN plugin implementing Leung & Bovy (2019, MNRAS 489, 2079).  Importing
it is cheap (no TensorFlow, no astroNN) and prepares both:

* it sets ``TF_USE_LEGACY_KERAS=1``, so that TensorFlow, whenever it is
  imported later, gives astroNN 1.1.0 the Keras 2 API
  (``astronn_gaiacal._compat``);
* it installs an import hook that, right after ``astroNN.models`` is
  imported, imports :mod:`astronn_gaiacal.nn` and :mod:`astronn_gaiacal.models`,
  which register the plugin's models, layers and losses where
  ``astroNN.models.load_folder`` finds them (:mod:`astronn_gaiacal.registry`).
  So ``import astronn_gaiacal`` then ``from astroNN.models import load_folder``
  is all a saved folder needs, and the command line's ``--help`` stays instant.

The names below are the curated public API; each lives in the module of its
layer (docs/architecture.rst) and is imported from there on first use.

=====================  ==========================================================
models                 ``ApogeeGaiaBCNN``, ``ApogeeDR17GaiaDR3BCNN``, ``DenseGaiaBNN``,
                       ``GaiaCalBCNNBase``, ``DeepEnsemble``, ``load``
data                   ``Dataset``, ``read_dataset``, ``write_dataset``,
                       ``simulate_survey``, ``crossmatch``, ``crossmatch_local``
pipeline               ``train``, ``predict_stars``, ``catalogue_for``
zero-point             ``fit_zeropoint``, ``fit_zeropoint_trend``, ``DEFAULT_ESTIMATE``
conventions            ``ZEROPOINT_CONVENTION``
settings               ``conf`` (astropy ``ConfigNamespace``: archive URL, timeouts, chunk size, caches)
registration           ``register``, ``registered``
=====================  ==========================================================
"""
import importlib
import sys

from . import _compat  # (must run before anything imports TensorFlow; cheap)
from ._versions import __version__, show_versions
from .registry import on_demand, register, registered


@on_demand
def _define_components(_astronn_models=None):
    """Import the plugin's nn and models, whose import registers their components.

    Runs right after ``astroNN.models`` is imported (the hook below) and from
    :func:`registered`.  A module already being imported is left to finish.
    """
    for name in ("nn", "models"):
        if f"{__name__}.{name}" not in sys.modules:
            importlib.import_module(f".{name}", __name__)


_compat.on_import("astroNN.models", after=_define_components)

#: Public name -> module that defines it.
_EXPORTS = {
    **dict.fromkeys(("ApogeeGaiaBCNN", "ApogeeDR17GaiaDR3BCNN", "DenseGaiaBNN", "GaiaCalBCNNBase", "DeepEnsemble",
                     "load"), "models"),
    **dict.fromkeys(("Dataset", "read_dataset", "write_dataset"), "io.dataset"),
    "simulate_survey": "simulate",
    **dict.fromkeys(("crossmatch", "crossmatch_local"), "sources.xmatch"),
    **dict.fromkeys(("train", "predict_stars", "catalogue_for"), "pipeline"),
    "fit_zeropoint": "zeropoint.fit",
    "fit_zeropoint_trend": "zeropoint.trends",
    "DEFAULT_ESTIMATE": "zeropoint.estimates",
    "ZEROPOINT_CONVENTION": "constants",
    "conf": "config",
}

__all__ = ["__version__", "register", "registered", "show_versions", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
