r"""A mock APOGEE x Gaia DR2 survey with known distances and an injected parallax zero-point.

The simulator draws stars (red giants, red-clump stars and main-sequence stars)
with physically consistent labels, places them in a disk-like Galaxy behind
dust, observes them with an APOGEE-like magnitude limit, gives them Gaia DR2-like
photometry and parallaxes (errors drawn from the real DR2 errors of APOGEE stars,
plus an injected zero-point), and synthesises 7514-pixel continuum-normalised
spectra from the real mean DR14 spectrum.  The output is an
:class:`astronn_gaiacal.io.dataset.Dataset` with the columns of the dataset
contract plus ``true_*`` columns.  ``docs/simulation.rst`` describes the model,
its sources and its limits.

Ingredients, in order:

* **Labels.**  Per population: RGB stars get log g, mass and [Fe/H] and a Teff
  along the giant branch; red-clump stars a luminosity (set so that the median
  :math:`M_{K_s} \approx -1.6`, Hawkins et al. 2017) and Teff; dwarfs a mass and
  age fraction giving L and R.  Then :math:`R^2 = GM/g` and
  :math:`L = 4\pi R^2 \sigma T_{\rm eff}^4` (astropy constants) tie them together.
  Giants carry the mass-dependent [C/N] of the first dredge-up.
* **Photometry.**  :math:`M_{\rm bol} = 4.74 - 2.5\log L`,
  :math:`M_{K_s} = M_{\rm bol} - BC_{K_s}(T_{\rm eff})` (:func:`bolometric_correction_ks`);
  :math:`(BP-RP)_0` and :math:`(G-K_s)_0` from Teff (:func:`gaia_colours`).
* **Positions.**  Sky positions concentrated to the plane (dec > -30 deg, APO's
  sky); distance drawn per star from a thin/thick double-exponential disk times
  :math:`d^2` within the apparent-magnitude window ``mag_limits``; dust is a
  double-exponential disk, so :math:`A_{K_s}` grows with distance and is larger
  at low latitude.
* **Gaia.**  :math:`\sigma_\varpi` drawn, at the star's G, from the real Gaia DR2
  errors of APOGEE DR14 stars (:func:`parallax_error_at`); catalogue parallax
  = true parallax + zero-point + Gaussian noise (negative values kept).
* **Spectra.**  :func:`model_spectra` (noise-free, a smooth function of the
  labels) plus Gaussian noise at the star's SNR.
* **Outliers** (off by default; :mod:`~astronn_gaiacal.simulate.outliers`):
  unresolved binaries, mis-matched cross-matches and Gaia error tails, each
  with its fraction, recorded in ``true_outlier``.

Modules: :mod:`~astronn_gaiacal.simulate.population` (the stars and their
catalogue columns), :mod:`~astronn_gaiacal.simulate.outliers`, :mod:`~astronn_gaiacal.simulate.photometry`,
:mod:`~astronn_gaiacal.simulate.spectra` (the spectral model),
:mod:`~astronn_gaiacal.simulate.survey` (datasets, files, figure) and
:mod:`~astronn_gaiacal.simulate.seeds` (random streams).  Their public names
are importable from :mod:`astronn_gaiacal.simulate`.

Examples
--------
>>> import astropy.units as u
>>> from astronn_gaiacal.simulate import simulate_survey
>>> ds = simulate_survey(50, seed=1, zeropoint=-52.3 * u.uas)
>>> ds["spectra"].shape
(50, 7514)
>>> float(ds["true_zeropoint"][0])
-0.0523
"""
from .photometry import EXTINCTION_RATIOS, GAIA_G_LIMIT, SOLAR_LOGG, SOLAR_MBOL, SOLAR_TEFF
from .photometry import bolometric_correction_ks, gaia_colours, parallax_error_at
from .population import DEFAULT_FRACTIONS, DISKS, DUST_AKS_PER_KPC, DUST_SCALES, R0_PC, THICK_FRACTION
from .population import paper_quadratic_zeropoint, simulate_catalogue
from .outliers import OUTLIER_CODES, Outliers
from .spectra import DIB_EW_PER_AV, DIB_SIGMA, DIB_WAVELENGTH, REFERENCE_LABELS, TEMPLATE_FILE, model_spectra
from .survey import plot_survey, simulate_survey, simulate_train_test, write_survey, write_train_test

__all__ = [
    "simulate_survey",
    "write_survey",
    "simulate_train_test",
    "write_train_test",
    "simulate_catalogue",
    "model_spectra",
    "bolometric_correction_ks",
    "gaia_colours",
    "parallax_error_at",
    "paper_quadratic_zeropoint",
    "plot_survey",
    "Outliers",
    "OUTLIER_CODES",
    "REFERENCE_LABELS",
    "DEFAULT_FRACTIONS",
    "DIB_EW_PER_AV",
    "DIB_SIGMA",
    "DIB_WAVELENGTH",
    "DISKS",
    "DUST_AKS_PER_KPC",
    "DUST_SCALES",
    "EXTINCTION_RATIOS",
    "GAIA_G_LIMIT",
    "R0_PC",
    "SOLAR_LOGG",
    "SOLAR_MBOL",
    "SOLAR_TEFF",
    "TEMPLATE_FILE",
    "THICK_FRACTION",
]
