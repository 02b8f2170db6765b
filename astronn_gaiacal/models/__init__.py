"""The plugin's astroNN models (registered with astroNN on import).

=========================  ==========================================================
class                      use
=========================  ==========================================================
``GaiaCalBCNNBase``        survey-agnostic base; subclass it for a new survey
``ApogeeGaiaBCNN``         the paper's APOGEE DR14 / Gaia DR2 joint model
``ApogeeDR17GaiaDR3BCNN``  APOGEE DR17 / Gaia DR3, DR3 zero-point inputs
``DenseGaiaBNN``           dense network for low-dimensional inputs
``DeepEnsemble``           K members of one class combined (calibrated uncertainties)
=========================  ==========================================================

:func:`load` opens any saved folder (single model or ensemble).
"""
from .apogee import ApogeeDR17GaiaDR3BCNN, ApogeeGaiaBCNN
from .base import OFFSET_VARIANTS, ZEROPOINT_CONVENTION, GaiaCalBCNNBase, NotTrainedError
from .dense import DenseGaiaBNN
from .ensemble import DeepEnsemble, load

__all__ = [
    "GaiaCalBCNNBase",
    "ApogeeGaiaBCNN",
    "ApogeeDR17GaiaDR3BCNN",
    "DenseGaiaBNN",
    "DeepEnsemble",
    "load",
    "NotTrainedError",
    "OFFSET_VARIANTS",
    "ZEROPOINT_CONVENTION",
]
