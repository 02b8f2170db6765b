"""Packaging for astronn_gaiacal.  Supported versions live in astronn_gaiacal/_versions.py."""
import os

from setuptools import find_packages, setup

_here = os.path.dirname(os.path.abspath(__file__))
_versions = {}
with open(os.path.join(_here, "astronn_gaiacal", "_versions.py")) as f:
    exec(f.read(), _versions)

with open(os.path.join(_here, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="astronn_gaiacal",
    version=_versions["__version__"],
    description="astroNN plugin: joint spectro-photometric distances and Gaia parallax zero-point (Leung & Bovy 2019)",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["astronn_gaiacal", "astronn_gaiacal.*"]),
    package_data={"astronn_gaiacal": ["resources/*.npy", "resources/*.md"]},
    include_package_data=True,
    python_requires=_versions["PYTHON_REQUIRES"],
    install_requires=_versions["install_requires"](),
    extras_require={
        # catalogue-scale inference (astronn_gaiacal.distributed): Dask, and LSDB/HATS for HEALPix-partitioned catalogues
        "scale": ["dask[dataframe]>=2024.12", "distributed>=2024.12", "lsdb>=0.11", "hats>=0.11", "hats-import>=0.11",
                  "nested-pandas>=0.7"],
        "test": ["pytest>=7", "pytest-timeout", "dask[dataframe]>=2024.12", "distributed>=2024.12", "lsdb>=0.11",
                 "hats>=0.11", "nested-pandas>=0.7"],
        "docs": ["sphinx>=7", "numpydoc>=1.6"],
    },
    entry_points={"console_scripts": ["astronn-gaiacal = astronn_gaiacal.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Astronomy",
        "Intended Audience :: Science/Research",
    ],
)
