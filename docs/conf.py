import os
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
# to the libraries it builds on.  The inventories are fetched from the web when the docs are built.  The
# generated API pages (docs/api/generated) and the build output (docs/_build) are not committed.
nitpicky = True
#: project -> documentation root whose objects.inv intersphinx reads
_INVENTORIES = """
python      https://docs.python.org/3
numpy       https://numpy.org/doc/stable
scipy       https://docs.scipy.org/doc/scipy
astropy     https://docs.astropy.org/en/stable
astroquery  https://astroquery.readthedocs.io/en/latest
pyvo        https://pyvo.readthedocs.io/en/latest
matplotlib  https://matplotlib.org/stable
dask        https://docs.dask.org/en/stable
distributed https://distributed.dask.org/en/stable
lsdb        https://docs.lsdb.io/en/stable
hats        https://hats.readthedocs.io/en/stable
requests    https://requests.readthedocs.io/en/latest
"""
intersphinx_mapping = {name: (url, None) for name, url in (line.split() for line in _INVENTORIES.strip().splitlines())}
intersphinx_timeout = 10
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
# Offline (no inventories) ``sphinx-build -n`` reports only the external names: 12 inventories not reached and
# about 1180 references into python/numpy/astropy/matplotlib/distributed/astroquery/pyvo/requests, each of which
# their objects.inv lists.  Nothing in this package is left unresolved.
