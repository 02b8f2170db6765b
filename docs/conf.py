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
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True}
# Keras' own (Google-style) docstrings of overridden methods such as ``call``
# are not ours to document and do not parse as numpydoc.
autodoc_inherit_docstrings = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
