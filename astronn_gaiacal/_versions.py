"""The package version and the supported dependency ranges.

``__version__`` is written here and only here (pyproject.toml reads it).  The
supported ranges are the requirements in pyproject.toml; at run time they are
read back from the installed package's metadata, so that
:func:`show_versions` (``astronn-gaiacal versions``) prints exactly what pip
enforces.  This module imports only the standard library (and ``packaging``
inside :func:`show_versions`): no TensorFlow.
"""
import functools
import platform
import re
import sys
from importlib import metadata

__version__ = "0.1.0"

DISTRIBUTION = "astronn_gaiacal"

PYTHON_REQUIRES = ">=3.11"  # astropy >= 7.1 needs it

#: Why a requirement is there or bounded, printed by :func:`show_versions`.
NOTES = {
    "tensorflow": "TF 2.12-2.15 are not supported: astroNN's Keras 2 then needs tf-keras, which needs TF >= 2.16",
    "tf-keras": "the Keras 2 API astroNN 1.1.0 needs, through TF_USE_LEGACY_KERAS=1",
    "astropy": "long FITS header values (HIERARCH + CONTINUE) for dataset/xmatch metadata",
    "scipy": "zero-point refits",
    "numba": "the fused MC-dropout kernels (astronn_gaiacal.nn.fused)",
    "pyarrow": "Parquet tables",
    "setuptools": "astroNN 1.1.0 imports pkg_resources",
    "hats": "HATS internals are used: bounded to the tested minor release",
}


def _requirements():
    """(name, specifier, extra) for every requirement in the installed metadata."""
    from packaging.requirements import Requirement

    try:
        lines = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return []
    out = []
    for line in lines:
        req = Requirement(line)
        extra = None
        if req.marker is not None:
            markers = str(req.marker)
            if "extra ==" in markers:
                extra = markers.split("extra ==")[1].strip().strip("\"'")
        if req.name == DISTRIBUTION:  # an extra that pulls in another extra
            continue
        out.append((req.name, req.specifier, extra))
    return out


def install_requires():
    """The core requirement strings, as installed (``name`` + specifier)."""
    return [f"{name}{spec}" for name, spec, extra in _requirements() if extra is None]


def _supported():
    return {name: str(spec) for name, spec, extra in _requirements() if extra is None}


def __getattr__(name):
    if name == "SUPPORTED":  # read from the metadata when asked, not at import
        return _supported()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=1)
def _installed_versions():
    """{normalised name: version} of every installed distribution (one scan of sys.path; first found wins)."""
    versions = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(_normalise(name), dist.version)
    return versions


def _installed(name):
    return _installed_versions().get(_normalise(name))


def keras_route():
    """How ``tf.keras`` reaches Keras 2 here, from the installed versions (TensorFlow is not imported)."""
    tf_version = _installed("tensorflow")
    if tf_version is None:
        return "TensorFlow not installed"
    major_minor = tuple(int(p) for p in tf_version.split(".")[:2])
    if major_minor >= (2, 16):
        keras = _installed("tf-keras")
        return f"tf-keras {keras or 'NOT INSTALLED'} (TF_USE_LEGACY_KERAS=1)"
    return f"built-in Keras 2 of TensorFlow {tf_version}"


def check_versions():
    """Installed versions against the supported ranges.

    Returns
    -------
    list of dict
        One row per requirement: ``name``, ``extra`` (None for a core
        requirement, else the extra that adds it), ``installed`` (None if
        missing), ``supported`` (the specifier) and ``status``: ``"ok"``,
        ``"missing"`` or ``"out of range"``.  A missing optional requirement
        is ``"not installed"``, which is fine.
    """
    rows, seen = [], set()
    for name, spec, extra in _requirements():
        if (name, extra) in seen or (extra is not None and (name, None) in seen):
            continue
        seen.add((name, extra))
        installed = _installed(name)
        if installed is None:
            status = "missing" if extra is None else "not installed"
        elif spec and not spec.contains(installed, prereleases=True):
            status = "out of range"
        else:
            status = "ok"
        rows.append(dict(name=name, extra=extra, installed=installed, supported=str(spec) or "any",
                         status=status))
    return rows


def show_versions(file=None):
    """Print installed versions next to the supported ranges, flagging problems.

    Every requirement of the installed package is listed, the optional ones
    (with the extra that adds them) included; one outside its range or
    missing is marked ``<-- OUT OF RANGE`` / ``<-- MISSING``.  Nothing heavy
    is imported.

    Parameters
    ----------
    file : file-like, optional
        Where to print; defaults to ``sys.stdout``.

    Returns
    -------
    int
        The number of requirements missing or outside their range.

    Examples
    --------
    >>> import io
    >>> from astronn_gaiacal import show_versions
    >>> out = io.StringIO()
    >>> problems = show_versions(file=out)
    >>> out.getvalue().splitlines()[0].startswith("astronn_gaiacal ")
    True
    """
    out = file or sys.stdout
    print(f"astronn_gaiacal {__version__}", file=out)
    print(f"{'python':<27} {platform.python_version():<14} supported {PYTHON_REQUIRES}", file=out)
    problems = 0
    for row in check_versions():
        name = row["name"] if row["extra"] is None else f"{row['name']} [{row['extra']}]"
        flag = {"out of range": "  <-- OUT OF RANGE", "missing": "  <-- MISSING"}.get(row["status"], "")
        problems += bool(flag)
        note = f"  # {NOTES[row['name']]}" if row["name"] in NOTES else ""
        print(f"{name:<27} {row['installed'] or 'not installed':<14} supported {row['supported']}{flag}{note}",
              file=out)
    print(f"{'keras API':<27} {keras_route()}", file=out)
    if problems:
        print(f"{problems} requirement(s) missing or outside the supported range: "
              f"pip install -e '.[test]' (or pip install astronn_gaiacal) fixes the core ones", file=out)
    return problems
