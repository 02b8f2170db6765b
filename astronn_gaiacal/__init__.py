"""astronn_gaiacal: joint spectro-photometric distances and Gaia parallax zero-point.

An astroNN plugin implementing Leung & Bovy (2019, MNRAS 489, 2079).  Importing
it makes astroNN 1.1.0 work on the installed TensorFlow (see
:mod:`astronn_gaiacal._compat`) and registers the plugin's models, layers and
losses where ``astroNN.models.load_folder`` finds them.
"""
from . import _compat  # noqa: F401  (must run before anything imports TensorFlow)
from ._versions import __version__
from .registry import register, registered
from .nn import layers as _layers, losses as _losses

for _cls in (
    _layers.FakemagToParallax,
    _layers.FakemagLogVariance,
    _layers.Scale,
    _layers.SliceColumns,
    _layers.ConstantFeature,
    _layers.BlockConv1D,
    _layers.FastMaxPooling1D,
    _layers.FastMCDropout,
):
    register(_cls)
for _name, _cls in _losses.LOSS_CLASSES.items():
    register(_cls)
    register(getattr(_losses, _name))

from . import models  # noqa: E402,F401  (registers the model classes)

__all__ = ["__version__", "register", "registered", "show_versions"]


def show_versions(file=None):
    """Print installed versions next to the supported ranges.

    Parameters
    ----------
    file : file-like, optional
        Where to print; defaults to ``sys.stdout``.
    """
    import platform
    import sys
    from importlib import metadata

    from ._versions import STACKS, SUPPORTED

    out = file or sys.stdout
    print(f"astronn_gaiacal {__version__}", file=out)
    print(f"python          {platform.python_version()}  (supported {_versions_python()})", file=out)
    for dist, spec in SUPPORTED.items():
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        print(f"{dist:<23} {installed:<14} supported {spec}", file=out)
    print(f"keras API       {_compat.KERAS_VERSION} (tf.keras route: {_compat.KERAS_ROUTE})", file=out)
    for name, stack in STACKS.items():
        print(f"tested stack    {name}: {stack}", file=out)


def _versions_python():
    from ._versions import PYTHON_REQUIRES

    return PYTHON_REQUIRES
