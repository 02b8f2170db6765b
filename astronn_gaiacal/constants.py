"""Conventions of Leung & Bovy (2019) and of astroNN: one source of truth.

Every module reads its constants from here.
"""
import numpy as np

#: astroNN's magic number for a missing value (astroNN.config.MAGIC_NUMBER default).
MAGIC_NUMBER = -9999.0

#: Length of a continuum-normalised APOGEE spectrum after astroNN's gap deletion.
APOGEE_SPECTRUM_LENGTH = 7514

#: Length of a raw apStar spectrum (three detectors, before gap deletion).
APSTAR_LENGTH = 8575

#: APOGEE_PIXMASK bits set to 1 (flux = 1) before continuum normalisation, as in the paper.
APOGEE_PIXMASK_BITS = (0, 1, 2, 3, 4, 5, 6, 7, 12)

#: Column of the extinction-corrected Ks magnitude in the paper's 7518-column input.
PAPER_MAG_COLUMN = APOGEE_SPECTRUM_LENGTH

#: Fixed factor between the luminosity network's Softplus output and normalised fakemag
#: (ApogeeDR14GaiaDR2BCNN: "such that fakemag std approx. 1 for training set").
PAPER_FAKEMAG_SCALE = 73.85

#: Absolute magnitude of the Sun in 2MASS Ks (astroNN.gaia's value).
SOLAR_ABSMAG_KS = 3.27

#: Red-clump absolute magnitude in 2MASS Ks (Hawkins et al. 2017, -1.61 +/- 0.01; Ruiz-Dern et al. 2018,
#: -1.606 +/- 0.009): the standard candle that anchors an additive luminosity error (zeropoint.trends).
RED_CLUMP_ABSMAG_KS = -1.61
#: Intrinsic spread of the red clump's Ks absolute magnitude (Hawkins et al. 2017, 0.17 +/- 0.03 mag): the
#: per-star error of a red-clump anchor.
RED_CLUMP_ABSMAG_KS_SPREAD = 0.17

#: Published constant zero-point, Leung & Bovy (2019): -52.3 +/- 2.0 micro-arcsec.
PAPER_ZEROPOINT_UAS = -52.3
PAPER_ZEROPOINT_ERR_UAS = 2.0

#: Degrees of freedom of the Student-t likelihood (``gaia_student_t_nll`` and the robust zero-point refits).
DEFAULT_STUDENT_T_NU = 4.0

#: Offset-model features of the paper's multivariate model.
PAPER_OFFSET_FEATURES = ("phot_g_mean_mag", "bp_rp", "teff")
#: Offset models of a multivariate joint model: the paper's dense network, or one quadratic per
#: standardised feature (:class:`~astronn_gaiacal.nn.layers.QuadraticOffset`); the default is chosen by
#: the pre-registered study of docs/calibration.rst ("The multivariate method").
OFFSET_HEADS = ("network", "quadratic")
#: The offset model of ``offset='multivariate'`` unless ``offset_head`` is given (one of :data:`OFFSET_HEADS`).
DEFAULT_OFFSET_HEAD = "network"

#: Gaia DR3 zero-point inputs (Lindegren et al. 2021).
DR3_OFFSET_FEATURES = ("nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat", "astrometric_params_solved")

#: Paper's selection thresholds (Section 2).
PAPER_SNR_SPLIT = 200.0
#: Lowest S/N the training spectra are degraded to, so that the luminosity network is trained at the
#: S/N it is applied at (:mod:`astronn_gaiacal.nn.noise`); the lowest S/N of the uncertainty calibration.
TRAINING_NOISE_SNR = 50.0
PAPER_MAX_PARALLAX_ERROR_MAS = 0.1
PAPER_MIN_VISIBILITY_PERIODS = 11
PAPER_MAX_VSCATTER_KMS = 1.0

#: Quadratic summaries of the multivariate offset (micro-arcsec), paper eqs. 7-9 with their
#: validity ranges.  Eq. 7's linear coefficient is printed as -92 in the paper, which cannot be
#: right (it gives +330 uas at G = 12); -0.92 matches the text and Fig. 4 and is used here.
PAPER_QUADRATIC_TRENDS = {
    "phot_g_mean_mag": {"coeffs": (1.18, -0.92, -55.49), "pivot": 16.0, "range": (11.0, 17.0)},
    "bp_rp": {"coeffs": (6.90, -34.63, -11.67), "pivot": 0.0, "range": (0.8, 3.0)},
    "teff": {"coeffs": (6e-6, 0.0348, -53.17), "pivot": 4500.0, "range": (4000.0, 5750.0)},
}

LN10 = float(np.log(10.0))


def is_missing(x):
    """Boolean mask of missing entries: the magic number, NaN or infinite.

    Examples
    --------
    >>> is_missing([1.0, -9999.0, float("nan"), float("inf")]).tolist()
    [False, True, True, True]
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fc":  # float32 spectra stay float32: no full-size float64 copy
        x = x.astype(float)
    return (x == MAGIC_NUMBER) | ~np.isfinite(x)


#: Reference epochs (Julian years, TCB) of the Gaia releases' astrometry.
GAIA_REF_EPOCH = {"dr2": 2015.5, "edr3": 2016.0, "dr3": 2016.0}

#: Cross-match radius of the paper (APOGEE DR14 to Gaia DR2), arcsec.
PAPER_XMATCH_RADIUS_ARCSEC = 2.0

#: APOGEE data release whose continuum mask and detector gaps are used when none is given
#: and none can be read from an apStar file name (astroNN's own default).
APOGEE_DEFAULT_DR = 17

#: Photometric band of ``mag`` (2MASS Ks), written as the dataset attribute ``band``.
DEFAULT_BAND = "Ks"

#: Paper's luminosity cut for the training/test sets: log10(L/L_sun) in Ks > 0, or parallax < 0.
PAPER_MIN_LOG_LUMINOSITY = 0.0

#: Fraction of the training set held out for validation (paper: 90/10 split).
PAPER_VALIDATION_FRACTION = 0.1

#: sigma_MAD = 1.4826 median|R - median R|, paper eq. 10.
SIGMA_MAD_SCALE = 1.4826

#: Sign convention of every zero-point the package reports.
ZEROPOINT_CONVENTION = "parallax_gaia = parallax_true + zeropoint"

#: File endings read and written as the HDF5 dataset format.
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")

#: Registered model class used when none is named (the paper's APOGEE x Gaia DR2 network).
DEFAULT_MODEL = "ApogeeGaiaBCNN"

#: Units of the dataset and catalogue columns that carry one (astropy unit strings).
COLUMN_UNITS = {
    "parallax": "mas", "parallax_error": "mas", "true_parallax": "mas", "gaia_parallax": "mas",
    "gaia_parallax_error": "mas", "pmra": "mas / yr", "pmra_error": "mas / yr", "pmdec": "mas / yr",
    "pmdec_error": "mas / yr", "ra": "deg", "dec": "deg", "ra_apogee": "deg", "dec_apogee": "deg", "ecl_lat": "deg",
    "teff": "K", "teff_error": "K", "mag": "mag", "mag_error": "mag", "mag_ext": "mag", "phot_g_mean_mag": "mag",
    "phot_bp_mean_mag": "mag", "phot_rp_mean_mag": "mag", "bp_rp": "mag", "vscatter": "km / s",
    "nu_eff_used_in_astrometry": "1 / um", "pseudocolour": "1 / um",
    "true_zeropoint": "mas", "true_distance": "pc", "true_mass": "solMass", "true_absmag_ks": "mag", "true_mag": "mag",
    "true_luminosity": "solLum", "zeropoint": "mas", "zeropoint_error": "mas", "ref_epoch": "yr", "ks_m": "mag",
    "ks_msigcom": "mag", "xmatch_sep": "arcsec", "distance": "pc", "mass": "solMass",
}

#: The validated training recipes (docs/calibration.rst): ``(minimum training stars, settings)``, largest size
#: first.  Up to 10,000 stars: the recipe of the calibration study (3,000 stars: a 4-member ensemble, 70 epochs at
#: lr 3e-3, the weights of the last 35 % of the epochs averaged); from 10,000 stars the paper's scale (35,000 stars:
#: 5 members, 40 epochs at the paper's lr 1e-3).  ``train`` takes these unless a setting is given.
TRAINING_RECIPES = (
    (10_000, dict(epochs=40, lr=1e-3, weight_averaging=0.35, ensemble=5)),
    (0, dict(epochs=70, lr=3e-3, weight_averaging=0.35, ensemble=4)),
)


def training_recipe(n_stars):
    """The validated training settings for a training set of ``n_stars`` usable stars.

    >>> training_recipe(3000)
    {'epochs': 70, 'lr': 0.003, 'weight_averaging': 0.35, 'ensemble': 4}
    >>> training_recipe(35000)["ensemble"]
    5
    """
    for minimum, recipe in TRAINING_RECIPES:
        if int(n_stars) >= minimum:
            return dict(recipe)
    raise ValueError(f"n_stars must be >= 0, got {n_stars!r}")
