"""Which path runs the convolution stack: the fused Numba kernels on a CPU, TensorFlow on a GPU.

The fused kernels (:mod:`astronn_gaiacal.nn.fused`, :mod:`astronn_gaiacal.nn.fused_training`)
replace the paper network's convolution stack by one Numba kernel per pass on the host CPU.  On a
machine with a visible GPU the same layers run as TensorFlow operations instead (cuDNN
convolutions, no host round trip every step), and without Numba installed they run as TensorFlow
operations everywhere.  A model's ``train_fused`` / ``inference_fused`` attribute overrides the
choice: ``None`` (the default) decides as above, ``True`` or ``False`` forces a path.  The choice is
logged once per process and path.

Examples
--------
>>> from astronn_gaiacal.nn.device import use_fused_kernels
>>> use_fused_kernels(False, "inference")
False
"""
import importlib.util
import logging
import sys
import warnings

from .._compat import tf

__all__ = ["FusedKernelsUnavailable", "gpu_visible", "numba_available", "use_fused_kernels"]

log = logging.getLogger(__name__)

_LOGGED = set()
_WARNED = []


class FusedKernelsUnavailable(RuntimeError):
    """Fused kernels were asked for explicitly, but Numba is not installed."""


def numba_available():
    """Whether Numba can be imported (the fused kernels need it)."""
    if "numba" in sys.modules:
        return sys.modules["numba"] is not None
    return importlib.util.find_spec("numba") is not None


def gpu_visible():
    """Whether TensorFlow sees a GPU (``tf.config.list_physical_devices('GPU')``)."""
    return bool(tf.config.list_physical_devices("GPU"))


def use_fused_kernels(option, what):
    """Run ``what`` (``'training'`` or ``'inference'``) through the fused CPU kernels?

    Parameters
    ----------
    option : bool or None
        ``True``/``False`` force the fused kernels or TensorFlow; ``None`` chooses the fused
        kernels on a CPU-only machine with Numba, TensorFlow on a GPU or without Numba.
    what : str
        Named in the log line and the warning.

    Returns
    -------
    bool

    Raises
    ------
    FusedKernelsUnavailable
        ``option=True`` without Numba installed.
    """
    if option is not None:
        if option and not numba_available():
            raise FusedKernelsUnavailable(f"fused {what} kernels need Numba (pip install numba), or set the "
                                          f"model's {'train' if what == 'training' else 'inference'}_fused = False")
        choice, reason = bool(option), "set on the model"
    elif gpu_visible():
        choice, reason = False, "a GPU is visible: TensorFlow/cuDNN"
    elif not numba_available():
        choice, reason = False, "Numba is not installed: TensorFlow operations"
        if not _WARNED:
            _WARNED.append(True)
            warnings.warn("Numba is not installed: the convolution stack runs as TensorFlow operations, several "
                          "times slower on a CPU (pip install numba)", RuntimeWarning, stacklevel=3)
    else:
        choice, reason = True, "CPU only: fused Numba kernels"
    if (what, choice) not in _LOGGED:
        _LOGGED.add((what, choice))
        log.info("%s: %s (%s)", what, "fused kernels" if choice else "TensorFlow layers", reason)
    return choice
