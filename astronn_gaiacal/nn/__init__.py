"""Keras components of the plugin: layers and likelihoods."""
from .layers import (
    BlockConv1D,
    ConstantFeature,
    FakemagLogVariance,
    FakemagToParallax,
    FastMaxPooling1D,
    FastMCDropout,
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

__all__ = [
    "BlockConv1D",
    "ConstantFeature",
    "FakemagLogVariance",
    "FakemagToParallax",
    "FastMaxPooling1D",
    "FastMCDropout",
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
