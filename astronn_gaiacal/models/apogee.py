"""APOGEE models: the paper's joint network and its DR17/Gaia DR3 successor."""
from ..constants import (
    APOGEE_SPECTRUM_LENGTH,
    DEFAULT_BAND,
    DR3_OFFSET_FEATURES,
    PAPER_OFFSET_FEATURES,
)
from ..registry import register
from .base import GaiaCalBCNNBase


@register
class ApogeeGaiaBCNN(GaiaCalBCNNBase):
    """The paper's joint model (astroNN's ``ApogeeDR14GaiaDR2BCNN`` architecture).

    APOGEE DR14 continuum-normalised spectra (7514 pixels), extinction-corrected
    2MASS Ks, Gaia DR2 parallaxes.  Conv1D(2, 4 filters, kernel 8),
    MaxPool(4), Dense(164, 64); offset network Dense(32, 16, 1); dropout 0.3,
    L2 5e-9, Adam lr 1e-3, batch 64.

    Parameters
    ----------
    offset : {'none', 'constant', 'multivariate'}
        Default ``'constant'``; multivariate uses G, BP-RP and Teff unless
        ``offset_features`` says otherwise.
    **kwargs
        See :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`.

    Examples
    --------
    >>> from astronn_gaiacal.models import ApogeeGaiaBCNN
    >>> net = ApogeeGaiaBCNN(offset="multivariate")
    >>> net.offset_features
    ['phot_g_mean_mag', 'bp_rp', 'teff']
    """

    spectrum_length = APOGEE_SPECTRUM_LENGTH
    band = DEFAULT_BAND
    gaia_release = "dr2"
    default_offset = "constant"
    default_offset_features = PAPER_OFFSET_FEATURES


@register
class ApogeeDR17GaiaDR3BCNN(ApogeeGaiaBCNN):
    """APOGEE DR17 spectra with Gaia DR3 parallaxes.

    The offset model defaults to ``'multivariate'`` on the inputs of the Gaia
    DR3 zero-point recipe (Lindegren et al. 2021): ``nu_eff_used_in_astrometry``,
    ``pseudocolour``, ``ecl_lat`` and ``astrometric_params_solved``.
    """

    gaia_release = "dr3"
    default_offset = "multivariate"
    default_offset_features = DR3_OFFSET_FEATURES
