"""The plugin's astroNN models (registered with astroNN on import).

=========================  ==========================================================
class                      use
=========================  ==========================================================
``ZeropointModel``         what every trained model offers (a single model or an ensemble)
``GaiaCalBCNNBase``        survey-agnostic base; subclass it for a new survey
``ApogeeGaiaBCNN``         the paper's APOGEE DR14 / Gaia DR2 joint model
``ApogeeDR17GaiaDR3BCNN``  APOGEE DR17 / Gaia DR3, DR3 zero-point inputs
``DenseGaiaBNN``           dense network for low-dimensional inputs
``DeepEnsemble``           K members of one class combined (calibrated uncertainties)
=========================  ==========================================================

:func:`load` opens any saved folder (single model or ensemble).

Modules: :mod:`~astronn_gaiacal.models.base` (options, ``fit``, persistence),
:mod:`~astronn_gaiacal.models.network` (the Keras graph),
:mod:`~astronn_gaiacal.models.training` (compile and the training step),
:mod:`~astronn_gaiacal.models.prediction` (MC-dropout predictions),
:mod:`~astronn_gaiacal.models.transfer` (``fit(luminosity_from=...)``),
:mod:`~astronn_gaiacal.models.inputs` (input checks and layouts),
:mod:`~astronn_gaiacal.models.protocol` (:class:`ZeropointModel`),
:mod:`~astronn_gaiacal.models.folders` (the saved-folder format),
:mod:`~astronn_gaiacal.models.calibration` (the uncertainty scale fitted on held-out Gaia parallaxes),
:mod:`~astronn_gaiacal.models.ensemble`, :mod:`~astronn_gaiacal.models.workers`
(trainings in worker processes) and :mod:`~astronn_gaiacal.models.paper` (the
paper's own folders).
"""
from ..constants import ZEROPOINT_CONVENTION
from .apogee import ApogeeDR17GaiaDR3BCNN, ApogeeGaiaBCNN
from .base import OFFSET_VARIANTS, GaiaCalBCNNBase, check_magic_number
from .dense import DenseGaiaBNN
from .ensemble import DeepEnsemble, load
from .inputs import NotTrainedError
from .protocol import ZeropointModel

__all__ = [
    "OFFSET_VARIANTS",
    "ZEROPOINT_CONVENTION",
    "ApogeeDR17GaiaDR3BCNN",
    "ApogeeGaiaBCNN",
    "DeepEnsemble",
    "DenseGaiaBNN",
    "GaiaCalBCNNBase",
    "NotTrainedError",
    "ZeropointModel",
    "check_magic_number",
    "load",
]
