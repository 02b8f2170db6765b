import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))
from astronn_gaiacal._versions import __version__  # noqa: E402

project = "astronn_gaiacal"
author = "astronn_gaiacal developers"
release = version = __version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
templates_path = ["_templates"]
#: Pages (``:template: autosummary/reexports.rst`` in api.rst) that list the classes they re-export but leave
#: their entries to the defining modules' pages: a class re-exported by two such pages (``astronn_gaiacal`` and
#: ``astronn_gaiacal.models``; ``models`` and ``models.base``) would otherwise have two alias entries, a
#: duplicate object description.
_REEXPORT_PAGES = ("astronn_gaiacal", "astronn_gaiacal.models.base")


def _reexported_classes(modname):
    """``{name: full path where it is documented}`` of the classes in ``modname.__all__`` defined elsewhere."""
    import importlib

    module = importlib.import_module(modname)
    objects = {name: getattr(module, name) for name in module.__all__}
    return {name: f"{obj.__module__}.{obj.__qualname__}" for name, obj in objects.items()
            if isinstance(obj, type) and obj.__module__ != modname}


autosummary_context = {"reexported": {page: _reexported_classes(page) for page in _REEXPORT_PAGES}}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True}
# Keras' own (Google-style) docstrings of overridden methods such as ``call``
# are not ours to document and do not parse as numpydoc.
autodoc_inherit_docstrings = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
# Every cross-reference must resolve (``sphinx-build -n -W``): to this package or, through intersphinx,
# to the libraries it builds on.  The generated API pages (docs/api/generated) and the build output
# (docs/_build) are not committed.
nitpicky = True
#: project -> documentation root (where the links go) and the inventory (objects.inv) that a Debian
#: documentation package installs, if there is one ('-': none).  Each project's inventory is read from the first
#: place that has it: its documentation online, else the Debian copy (``apt-get install python3-doc
#: python-astropy-doc python-astroquery-doc python-scipy-doc python-dask-doc python-distributed-doc
#: python-requests-doc``), so that a build without the network checks the references into those projects
#: too.  A Debian copy may be of an older release than the one installed; the links still go to the current
#: documentation.
_PYTHON = f"python{sys.version_info[0]}.{sys.version_info[1]}"
_INVENTORIES = f"""
python      https://docs.python.org/3                    /usr/share/doc/{_PYTHON}/html
numpy       https://numpy.org/doc/stable                 -
scipy       https://docs.scipy.org/doc/scipy             /usr/share/doc/python-scipy-doc/html
astropy     https://docs.astropy.org/en/stable           /usr/share/doc/python-astropy-doc/html
astroquery  https://astroquery.readthedocs.io/en/latest  /usr/share/doc/python-astroquery-doc/html
pyvo        https://pyvo.readthedocs.io/en/latest        -
matplotlib  https://matplotlib.org/stable                -
dask        https://docs.dask.org/en/stable              /usr/share/doc/python-dask-doc/html
distributed https://distributed.dask.org/en/stable       /usr/share/doc/python-distributed-doc/html
lsdb        https://docs.lsdb.io/en/stable               -
hats        https://hats.readthedocs.io/en/stable        -
requests    https://requests.readthedocs.io/en/latest    /usr/share/doc/python-requests-doc/html
"""


def _online(url):
    """Whether ``url``'s host resolves: without it (no network) intersphinx could only fail, with a warning."""
    import socket
    from urllib.parse import urlsplit

    try:
        socket.getaddrinfo(urlsplit(url).hostname, 443)
    except OSError:
        return False
    return True


def _intersphinx(table):
    """``intersphinx_mapping`` of the projects whose inventory can be read (online first, then the Debian copy),
    and the projects whose inventory is in neither place."""
    mapping, unchecked = {}, []
    for name, url, local in (line.split() for line in table.strip().splitlines()):
        places = ([None] if _online(url) else []) + [
            path for path in [os.path.join(local, "objects.inv")] if local != "-" and os.path.isfile(path)]
        if places:
            mapping[name] = (url, tuple(places))
        else:
            unchecked.append(name)
    return mapping, unchecked


intersphinx_mapping, _UNCHECKED = _intersphinx(_INVENTORIES)
intersphinx_timeout = 10
# A project whose inventory could not be found (offline, and no Debian copy: numpy, matplotlib, pyvo, lsdb and
# hats have none) is left out of intersphinx; the references to *its* names -- the project's name followed by
# '.' or ':' (numpydoc writes ``numpy:array_like``, ``numpy.ndarray``) -- are then not checked, and the build
# says which projects those are (``setup`` below).  Every other reference, this package's own above all, must
# resolve: no pattern here can match a name of astronn_gaiacal.
nitpick_ignore_regex = [(r".*", rf"{re.escape(name)}([.:].+)?") for name in _UNCHECKED]

# Autosummary tables list a module's ``__all__`` (the names automodule documents), not every public-looking name.
autosummary_ignore_module_all = False
# Parameter types are cross-referenced the numpydoc way: a term in numpydoc's default aliases (``int``,
# ``array_like``, ...) or in the aliases below becomes a link; any other word of a type ("shape", "[mas]",
# "optional") stays plain text.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {
    # the ecosystem's types, as the docstrings spell them (add a name here when a docstring starts using it)
    "Quantity": "astropy.units.Quantity",
    "Unit": "astropy.units.Unit",
    "Table": "astropy.table.Table",
    "QTable": "astropy.table.QTable",
    # this package's own types
    "Dataset": "astronn_gaiacal.io.dataset.Dataset",
    "DeepEnsemble": "astronn_gaiacal.models.ensemble.DeepEnsemble",
    "GaiaCalBCNNBase": "astronn_gaiacal.models.base.GaiaCalBCNNBase",
}


def setup(app):
    from sphinx.util import logging as sphinx_logging

    def _report(app):
        if _UNCHECKED:
            sphinx_logging.getLogger("conf").info(
                "intersphinx: no inventory for %s (offline, and no local copy): references to their names are "
                "not checked", ", ".join(_UNCHECKED))

    app.connect("builder-inited", _report)
