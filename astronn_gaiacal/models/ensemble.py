r"""Deep ensembles of joint models, for an honest zero-point uncertainty.

MC dropout measures how much the prediction changes when units are dropped;
it does not know how far the optimiser stopped from the best fit.  A deep
ensemble (Lakshminarayanan et al. 2017) trains ``K`` members from different
random initialisations, dropout masks and batch orders (optionally each on a
Poisson bootstrap of the stars, ``bootstrap=True``), and combines them:

.. math::

    \mu = \frac1K\sum_k \mu_k, \qquad
    \sigma^2 = \underbrace{\frac1K\sum_k \sigma^2_{{\rm MC},k}}_{\text{mean MC spread}}
             + \underbrace{\frac{1}{K-1}\sum_k (\mu_k-\mu)^2}_{\text{between members}}

The combined uncertainty is what users get, so it is what is calibrated
(:mod:`~astronn_gaiacal.models.calibration`): :meth:`DeepEnsemble.train` fits the
ensemble's own uncertainty scale on the validation stars its members share,
and :meth:`~DeepEnsemble.predict` applies it to the combination of the
members' uncalibrated uncertainties.

An ensemble folder holds one astroNN model folder per member
(``member_00`` ...) and ``astronn_gaiacal_ensemble.json`` (with the
ensemble's uncertainty calibration); :func:`load` opens either kind of folder.
"""
import os
import warnings

import numpy as np
from astropy import units as u

from .._versions import __version__
from ..io.atomic import atomic_directory
from ..zeropoint.calibrated import CalibratedZeropoint
from ..zeropoint.estimates import DEFAULT_ESTIMATE
from .calibration import (UNCERTAINTY_KEY, VALIDATION_SEED, CalibratedUncertainty, UncalibratedWarning,
                          UncertaintyCalibration, warn_uncalibrated)
from .convergence import ensemble_convergence
from .folders import (
    MANIFEST,
    ZEROPOINT_KEY,
    folder_kind,
    load_model_folder,
    member_folders,
    read_manifest,
    write_manifest,
)
from .protocol import ZeropointModel
from .screening import MemberScreeningWarning, held_out_nll, screen_members
from .workers import TrainJob, train_jobs

__all__ = ["MANIFEST", "MEMBER_ZEROPOINT_BATCH", "SCREENING_KEY", "DeepEnsemble", "load"]

#: Key of the member screening (:mod:`~astronn_gaiacal.models.screening`) in an ensemble's manifest.
SCREENING_KEY = "member_screening"

#: Stars per compiled call of each member's zero-point prediction when
#: :meth:`DeepEnsemble.predict_zeropoint` is given no batch size.
MEMBER_ZEROPOINT_BATCH = 4096


def _combine(means, variances):
    """Ensemble mean and total variance from member means and MC variances (axis 0 = member)."""
    means = np.asarray(means, dtype=float)
    variances = np.asarray(variances, dtype=float)
    k = means.shape[0]
    mean = means.mean(axis=0)
    between = means.var(axis=0, ddof=1) if k > 1 else np.zeros_like(mean)
    return mean, variances.mean(axis=0), between


def _member_attribute(name, doc, settable=False):
    """A property that reads the first member's ``name`` (and, ``settable``, sets every member's)."""

    def get(self):
        return getattr(self.members[0], name)

    def set_all(self, value):
        for member in self.members:
            setattr(member, name, value)

    return property(get, set_all if settable else None, doc=f"{doc} (setting it sets every member's)" if settable
                    else doc)


class DeepEnsemble(CalibratedUncertainty, ZeropointModel):
    """``K`` trained members of one joint-model class, used as one model.

    It offers what a single model offers
    (:class:`~astronn_gaiacal.models.ZeropointModel`, with the same
    signatures); its descriptive attributes are its members'.

    Parameters
    ----------
    members : list of GaiaCalBCNNBase
        Trained models of the same class, offset variant and features.

    Examples
    --------
    >>> from astronn_gaiacal.models import ApogeeGaiaBCNN, DeepEnsemble
    >>> ens = DeepEnsemble.train(lambda: ApogeeGaiaBCNN(offset="constant"), n_members=4,
    ...                          spectra=spectra, parallax=plx, parallax_error=plx_err,
    ...                          magnitude=ks)                         # doctest: +SKIP
    >>> ens.zeropoint()                                               # doctest: +SKIP
    """

    #: The combined refit whose error the calibration study found calibrated.
    default_estimate = DEFAULT_ESTIMATE

    def __init__(self, members):
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for m in members[1:]:
            if type(m) is not type(first) or m.offset != first.offset or m.n_features != first.n_features:
                raise ValueError("ensemble members must share class, offset variant and features")
        self.members = members
        self.folder_name = None
        # a one-member ensemble predicts what its member does, so its member's scale holds; otherwise calibrate
        self.uncertainty_calibration = first.uncertainty_calibration if len(members) == 1 else None
        self.zeropoint_calibration = first.zeropoint_calibration if len(members) == 1 else None
        #: The member screening of :meth:`train` (:func:`~astronn_gaiacal.models.screening.screen_members`), or None.
        self.screening = None

    def __len__(self):
        return len(self.members)

    @classmethod
    def of(cls, model):
        """``model`` itself if it is an ensemble, else a one-member ensemble of it (no between-member spread)."""
        return model if isinstance(model, cls) else cls([model])

    def without(self, indices):
        """The ensemble without the members at ``indices`` (e.g. those whose training failed).

        The combined uncertainty changes, so the new ensemble is uncalibrated
        (unless one member is left): call :meth:`~astronn_gaiacal.models.calibration.CalibratedUncertainty.calibrate_uncertainties` on it.

        Raises
        ------
        IndexError
            An index is not a member's.
        ValueError
            No member would be left.
        """
        drop = {int(i) for i in indices}
        outside = sorted(i for i in drop if not 0 <= i < len(self.members))
        if outside:
            raise IndexError(f"indices {outside} are not members of this {len(self.members)}-member ensemble")
        if len(drop) == len(self.members):
            raise ValueError("indices would leave no member")
        ens = type(self)([m for i, m in enumerate(self.members) if i not in drop])
        ens.screening = self.screening
        return ens

    # ------------------------------------------------------------------ description (the members')
    @property
    def n_members(self):
        """Number of members."""
        return len(self.members)

    offset = _member_attribute("offset", "The members' offset variant.")
    offset_features = _member_attribute("offset_features", "The members' offset features.")
    n_features = _member_attribute("n_features", "Offset-feature columns of the members' input layout.")
    spectrum_length = _member_attribute("spectrum_length", "Pixels per star of the members' spectra.")
    band = _member_attribute("band", "Photometric band of the members' magnitudes.")
    feature_ranges = _member_attribute("feature_ranges", "Training ranges of the offset features (the first member's).")
    loss_name = _member_attribute("loss_name", "The members' training likelihood.")
    mc_num = _member_attribute("mc_num", "MC-dropout passes of each member's predictions.", settable=True)
    verbose = _member_attribute("verbose", "The members' verbosity.", settable=True)

    @property
    def training_convergence(self):
        """Whether the members' trainings converged
        (:func:`~astronn_gaiacal.models.convergence.ensemble_convergence`)."""
        return ensemble_convergence([m.training_convergence for m in self.members])

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, factory, n_members=5, seed=0, bootstrap=False, progress=True, n_jobs=1, **fit_kwargs):
        """Train ``n_members`` members.

        Parameters
        ----------
        factory : callable
            Returns a fresh, untrained model (e.g. ``lambda: ApogeeGaiaBCNN(offset='constant')``).
            With ``n_jobs > 1`` it must be picklable (a module-level function or a
            :func:`functools.partial`, not a lambda).
        n_members : int
            Number of members (>= 2 for a between-member spread).
        seed : int
            Member ``k`` uses seed ``seed + k`` for its weights, dropout, shuffling and bootstrap.
        bootstrap : bool
            Weight stars by Poisson(1) draws (a bootstrap of the training set).
            Off by default: each member then sees only ~63 % of the stars and
            its luminosity scatter grows (7-9 % instead of ~5 % at the demo's
            size), which biases its zero-point more than the bootstrap spread
            is worth; the statistical error of
            :meth:`~astronn_gaiacal.models.protocol.ZeropointModel.refit_zeropoint` covers the sampling noise instead
            (docs/calibration.rst).
        n_jobs : int or None
            Members trained at once in worker processes
            (:func:`astronn_gaiacal.models.workers.train_jobs`); ``None`` uses one per
            core.  One training keeps about one core busy, so on ``c`` cores this
            is up to ``c`` times faster.
        **fit_kwargs
            Passed to each member's ``fit`` (spectra, parallax, parallax_error, magnitude, ...).
        """
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members!r}")
        n = len(np.asarray(fit_kwargs["parallax"]))
        base_weight = fit_kwargs.pop("sample_weight", None)
        fit_kwargs.setdefault("validation_seed", VALIDATION_SEED)  # the members hold out the same stars
        calibrate_zeropoint = fit_kwargs.pop("calibrate_zeropoint", True)
        fit_kwargs["calibrate_zeropoint"] = False  # the ensemble's, not each member's
        jobs = []
        for k in range(int(n_members)):
            weight = base_weight
            if bootstrap:
                draws = np.random.default_rng(int(seed) + k).poisson(1.0, n).astype(float)
                weight = draws if base_weight is None else draws * np.asarray(base_weight, float)
            jobs.append(TrainJob(factory, int(seed) + k, dict(fit_kwargs, sample_weight=weight), f"member {k}"))
        ens = cls(train_jobs(jobs, n_jobs=n_jobs, progress=progress))
        if ens.calibrate_at_fit:  # members clearly worse on the stars they all held out are left out
            ens = ens.screened(fit_kwargs["spectra"], fit_kwargs["parallax"], fit_kwargs["parallax_error"],
                               fit_kwargs.get("magnitude"), fit_kwargs.get("offset_features"))
        if ens.calibrate_at_fit:  # the combined uncertainty, on the validation stars the members share
            ens._calibrate_after_fit(fit_kwargs["spectra"], fit_kwargs["parallax"], fit_kwargs["parallax_error"],
                                     fit_kwargs.get("magnitude"), fit_kwargs.get("offset_features"))
        if calibrate_zeropoint and ens.calibrate_at_fit:  # the combined refit on the training stars
            ens._calibrate_zeropoint_after_fit(fit_kwargs["spectra"], fit_kwargs["parallax"],
                                               fit_kwargs["parallax_error"], fit_kwargs.get("magnitude"),
                                               fit_kwargs.get("offset_features"))
        return ens

    def screened(self, input_data, parallax, parallax_error, magnitude=None, offset_features=None):
        """The ensemble without the members that are significantly worse on the validation stars they share.

        :func:`~astronn_gaiacal.models.screening.held_out_nll` and
        :func:`~astronn_gaiacal.models.screening.screen_members`; the result is
        kept in :attr:`screening` (saved in the manifest).  Ensembles without a
        shared validation split, or of fewer than
        :data:`~astronn_gaiacal.models.screening.MIN_MEMBERS`, come back as they are.
        """
        try:
            nll, _ = held_out_nll(self, input_data, parallax, parallax_error, magnitude=magnitude,
                                  offset_features=offset_features)
        except ValueError as err:  # no shared validation split
            warnings.warn(f"the members were not screened: {err}", MemberScreeningWarning, stacklevel=2)
            return self
        result = screen_members(nll)
        ens = self.without(result["dropped"]) if result["dropped"] else self
        if result["dropped"]:
            warnings.warn(f"ensemble member(s) {result['dropped']} left out: their held-out likelihood is worse than "
                          f"the others' by {[round(result['significance'][i], 1) for i in result['dropped']]} "
                          f"standard errors (models.screening)", MemberScreeningWarning, stacklevel=2)
        ens.screening = {**result, "members_before": len(self)}
        return ens

    # ------------------------------------------------------------------ persistence
    def save(self, name, overwrite=False):
        """Save all members and a manifest into one folder, atomically."""
        final = os.path.abspath(os.fspath(name))
        with atomic_directory(final, overwrite=overwrite) as tmp:
            for k, member in enumerate(self.members):
                member.save(os.path.join(tmp, f"member_{k:02d}"))
            write_manifest(tmp, {
                "astronn_gaiacal_version": __version__,
                "model_class": type(self.members[0]).__name__,
                "members": [f"member_{k:02d}" for k in range(len(self.members))],
                "combination": "mean of member means; variance = mean MC variance + between-member variance",
                UNCERTAINTY_KEY: None if self.uncertainty_calibration is None else
                self.uncertainty_calibration.to_dict(),
                ZEROPOINT_KEY: None if self.zeropoint_calibration is None else self.zeropoint_calibration.to_dict(),
                SCREENING_KEY: self.screening,
            })
        for k, member in enumerate(self.members):
            member.folder_name = os.path.join(final, f"member_{k:02d}")
            member.fullfilepath = member.folder_name + os.sep
        self.folder_name = final
        return final

    @classmethod
    def load(cls, folder):
        """Load an ensemble folder written by :meth:`save` (one warning if it has no uncertainty calibration)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncalibratedWarning)  # the members' own scales are not used
            ens = cls([load_model_folder(path) for path in member_folders(folder)])
        ens.folder_name = os.path.abspath(folder)
        manifest = read_manifest(folder)
        ens.uncertainty_calibration = UncertaintyCalibration.from_dict(manifest.get(UNCERTAINTY_KEY))
        ens.zeropoint_calibration = CalibratedZeropoint.from_dict(manifest.get(ZEROPOINT_KEY))
        ens.screening = manifest.get(SCREENING_KEY)
        if ens.uncertainty_calibration is None:
            warn_uncalibrated(folder)
        return ens

    # ------------------------------------------------------------------ inference
    def predict(self, input_data, inputs_err=None, batch_size=None, calibrated=True, snr=None):
        """Fakemag and ``{'total','model','predictive'}``; 'model' includes the between-member spread.

        The members' uncalibrated uncertainties are combined; with
        ``calibrated`` (default) the combination is multiplied by the
        ensemble's uncertainty scale (at each star's ``snr`` if given and the
        calibration has an S/N dependence).
        """
        outs = [m.predict(input_data, batch_size=batch_size, calibrated=False) for m in self.members]
        mean, mc_var, between = _combine([o[0] for o in outs], [o[1]["model"] ** 2 for o in outs])
        predictive_var = np.mean([o[1]["predictive"] ** 2 for o in outs], axis=0)
        model_var = mc_var + between
        return mean, self._scaled({
            "total": np.sqrt(model_var + predictive_var),
            "model": np.sqrt(model_var),
            "predictive": np.sqrt(predictive_var),
        }, calibrated, snr)

    def _split_records(self):
        return [m.validation_split for m in self.members]

    def member_parallaxes(self, input_data, magnitude=None, batch_size=None):
        """Each member's MC-mean model parallax :math:`L\\,10^{-m/5}` (mas), shape ``(n_members, N)``."""
        return np.array([m.member_parallaxes(input_data, magnitude=magnitude, batch_size=batch_size)[0]
                         for m in self.members])

    def predict_zeropoint(self, features=None, mc_num=None, batch_size=None, shared_masks=False, components=False):
        """Ensemble zero-point (:meth:`ZeropointModel.predict_zeropoint <astronn_gaiacal.models.ZeropointModel.predict_zeropoint>`).

        The members' values are averaged; the error adds the mean MC-dropout
        variance and the variance between members.  ``batch_size`` defaults to
        :data:`~astronn_gaiacal.models.ensemble.MEMBER_ZEROPOINT_BATCH`.  With ``components=True`` also returns
        ``{'mc': ..., 'ensemble': ...}``, the two parts of the error
        (Quantities in mas).
        """
        batch_size = MEMBER_ZEROPOINT_BATCH if batch_size is None else batch_size
        kwargs = {"shared_masks": True} if shared_masks else {}
        outs = [m.predict_zeropoint(features, mc_num=mc_num, batch_size=batch_size, **kwargs) for m in self.members]
        mean, mc_var, between = _combine(
            [o[0].to_value(u.mas) for o in outs], [o[1].to_value(u.mas) ** 2 for o in outs]
        )
        result = mean * u.mas, np.sqrt(mc_var + between) * u.mas
        if components:
            return (*result, {"mc": np.sqrt(mc_var) * u.mas, "ensemble": np.sqrt(between) * u.mas})
        return result


def load(folder):
    """Open a saved model folder: an astroNN folder or an ensemble folder.

    Parameters
    ----------
    folder : str or path

    Returns
    -------
    GaiaCalBCNNBase or DeepEnsemble (or any astroNN model for a foreign folder)

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist or is neither kind of folder.
    """
    if folder_kind(folder) == "ensemble":
        return DeepEnsemble.load(folder)
    return load_model_folder(folder)
