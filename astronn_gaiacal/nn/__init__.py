"""Keras components of the plugin: layers and likelihoods."""
from .layers import ConstantFeature, FakemagLogVariance, FakemagToParallax, Scale, SliceColumns
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
    "ConstantFeature",
    "FakemagLogVariance",
    "FakemagToParallax",
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
