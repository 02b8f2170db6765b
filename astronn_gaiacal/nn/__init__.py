"""Keras components of the plugin: layers and likelihoods (registered with astroNN and Keras on import)."""
from .layers import (
    BlockConv1D,
    ConstantFeature,
    FakemagLogVariance,
    FakemagToParallax,
    FastMaxPooling1D,
    FastMCDropout,
    QuadraticOffset,
    Scale,
    SliceColumns,
)
from .losses import (
    DEFAULT_LOSS,
    GaiaGaussianNLL,
    GaiaStudentTNLL,
    GaussianNLL,
    gaia_gaussian_nll,
    gaia_student_t_nll,
    gaussian_nll,
    loss_from_name,
)

from ..registry import register
from . import losses as _losses

for _cls in (FakemagToParallax, FakemagLogVariance, Scale, SliceColumns, ConstantFeature, BlockConv1D,
             FastMaxPooling1D, FastMCDropout, QuadraticOffset):
    register(_cls)
for _name, _cls in _losses.LOSS_CLASSES.items():
    register(_cls)
    register(getattr(_losses, _name))

__all__ = [
    "BlockConv1D",
    "ConstantFeature",
    "FakemagLogVariance",
    "FakemagToParallax",
    "FastMaxPooling1D",
    "FastMCDropout",
    "QuadraticOffset",
    "Scale",
    "SliceColumns",
    "DEFAULT_LOSS",
    "GaiaGaussianNLL",
    "GaiaStudentTNLL",
    "GaussianNLL",
    "gaia_gaussian_nll",
    "gaia_student_t_nll",
    "gaussian_nll",
    "loss_from_name",
]
