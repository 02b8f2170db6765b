"""Supported dependency ranges: the one place they are stated.

This module imports nothing, so ``setup.py`` can read it without importing
TensorFlow.  :func:`astronn_gaiacal.show_versions` prints these ranges next to
the installed versions.
"""

__version__ = "0.1.0"

PYTHON_REQUIRES = ">=3.11"  # astropy >= 7.1 needs it

#: Requirement strings, keyed by distribution name.  The default stack is the
#: newest TensorFlow that works with astroNN 1.1.0 (through tf-keras); the
#: second supported stack is TF 2.12 + TFP 0.20, astroNN's own tested stack.
SUPPORTED = {
    "astroNN": "==1.1.0",
    "tensorflow": ">=2.12,<2.22",
    "tf-keras": ">=2.16,<2.22; needed only with tensorflow>=2.16",
    "tensorflow-probability": ">=0.20,<0.26",
    "astropy": ">=7.1; long FITS header values (HIERARCH + CONTINUE) for dataset/xmatch metadata",
    "numpy": ">=1.22",
    "astroquery": ">=0.4.6",
    "h5py": ">=3.0",
    "matplotlib": ">=3.5",
    "tqdm": ">=4.0",
    "numba": ">=0.57; the fused MC-dropout kernel (astronn_gaiacal.nn.fused)",
    "pyarrow": ">=10; Parquet tables (xmatch)",
    "setuptools": "<82; astroNN imports pkg_resources",
}

#: Tested stacks (tox environments).
STACKS = {
    "default (tox -e py311)": "tensorflow 2.21 + tf-keras 2.21 + tensorflow-probability 0.25",
    "legacy (tox -e py311-tf212)": "tensorflow 2.12 + tensorflow-probability 0.20",
}


def install_requires():
    """Requirement strings for ``setup.py`` (comments after ';' are dropped)."""
    reqs = []
    for name, spec in SUPPORTED.items():
        spec = spec.split(";")[0].strip()
        reqs.append(f"{name}{spec}")
    return reqs
