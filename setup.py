"""Build shim: the package's metadata is in pyproject.toml (PEP 621).

Kept so that tools which still call ``setup.py`` keep working; it adds nothing.
"""
from setuptools import setup

setup()
