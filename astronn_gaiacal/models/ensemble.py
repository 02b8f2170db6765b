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

An ensemble folder holds one astroNN model folder per member
(``member_00`` ...) and ``astronn_gaiacal_ensemble.json``; :func:`load`
opens either kind of folder.
"""
import json
import os

import numpy as np
from astropy import units as u

from ..io.atomic import atomic_directory
from .._versions import __version__

MANIFEST = "astronn_gaiacal_ensemble.json"


def _combine(means, variances):
    """Ensemble mean and total variance from member means and MC variances (axis 0 = member)."""
    means = np.asarray(means, dtype=float)
    variances = np.asarray(variances, dtype=float)
    k = means.shape[0]
    mean = means.mean(axis=0)
    between = means.var(axis=0, ddof=1) if k > 1 else np.zeros_like(mean)
    return mean, variances.mean(axis=0), between


class DeepEnsemble:
    """``K`` trained members of one joint-model class, used as one model.

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

    def __len__(self):
        return len(self.members)

    @classmethod
    def of(cls, model):
        """``model`` itself if it is an ensemble, else a one-member ensemble of it (no between-member spread)."""
        return model if isinstance(model, cls) else cls([model])

    def without(self, indices):
        """The ensemble without the members at ``indices`` (e.g. those whose training failed).

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
        return type(self)([m for i, m in enumerate(self.members) if i not in drop])

    def __getattr__(self, name):
        # descriptive attributes (offset, offset_features, spectrum_length, band, ...) of the members
        if name in ("members", "folder_name"):
            raise AttributeError(name)
        return getattr(self.members[0], name)

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
            :meth:`refit_zeropoint` covers the sampling noise instead
            (docs/calibration.rst).
        n_jobs : int or None
            Members trained at once in worker processes
            (:func:`astronn_gaiacal.models.workers.train_jobs`); ``None`` uses one per
            core.  One training keeps about one core busy, so on ``c`` cores this
            is up to ``c`` times faster.
        **fit_kwargs
            Passed to each member's ``fit`` (spectra, parallax, parallax_error, magnitude, ...).
        """
        from .workers import TrainJob, train_jobs

        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members!r}")
        n = len(np.asarray(fit_kwargs["parallax"]))
        base_weight = fit_kwargs.pop("sample_weight", None)
        jobs = []
        for k in range(int(n_members)):
            weight = base_weight
            if bootstrap:
                draws = np.random.default_rng(int(seed) + k).poisson(1.0, n).astype(float)
                weight = draws if base_weight is None else draws * np.asarray(base_weight, float)
            jobs.append(TrainJob(factory, int(seed) + k, dict(fit_kwargs, sample_weight=weight), f"member {k}"))
        return cls(train_jobs(jobs, n_jobs=n_jobs, progress=progress))

    # ------------------------------------------------------------------ persistence
    def save(self, name, overwrite=False):
        """Save all members and a manifest into one folder, atomically."""
        final = os.path.abspath(os.fspath(name))
        with atomic_directory(final, overwrite=overwrite) as tmp:
            for k, member in enumerate(self.members):
                member.save(os.path.join(tmp, f"member_{k:02d}"))
            manifest = {
                "astronn_gaiacal_version": __version__,
                "model_class": type(self.members[0]).__name__,
                "members": [f"member_{k:02d}" for k in range(len(self.members))],
                "combination": "mean of member means; variance = mean MC variance + between-member variance",
            }
            with open(os.path.join(tmp, MANIFEST), "w") as f:
                json.dump(manifest, f, indent=2)
        for k, member in enumerate(self.members):
            member.folder_name = os.path.join(final, f"member_{k:02d}")
            member.fullfilepath = member.folder_name + os.sep
        self.folder_name = final
        return final

    @classmethod
    def load(cls, folder):
        """Load an ensemble folder written by :meth:`save`."""
        from astroNN.models import load_folder

        path = os.path.join(folder, MANIFEST)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{folder} is not an ensemble folder (no {MANIFEST})")
        with open(path) as f:
            manifest = json.load(f)
        ens = cls([load_folder(os.path.join(folder, m)) for m in manifest["members"]])
        ens.folder_name = os.path.abspath(folder)
        return ens

    # ------------------------------------------------------------------ inference
    @property
    def mc_num(self):
        return self.members[0].mc_num

    @mc_num.setter
    def mc_num(self, value):
        for m in self.members:
            m.mc_num = value

    def predict(self, input_data, inputs_err=None, batch_size=None):
        """Fakemag and ``{'total','model','predictive'}``; 'model' includes the between-member spread."""
        outs = [m.predict(input_data, batch_size=batch_size) for m in self.members]
        mean, mc_var, between = _combine([o[0] for o in outs], [o[1]["model"] ** 2 for o in outs])
        predictive_var = np.mean([o[1]["predictive"] ** 2 for o in outs], axis=0)
        model_var = mc_var + between
        return mean, {
            "total": np.sqrt(model_var + predictive_var),
            "model": np.sqrt(model_var),
            "predictive": np.sqrt(predictive_var),
        }

    test = predict

    def _via_fakemag(self, input_data, magnitude, batch_size, convert):
        spectra, mag = self.members[0]._magnitude_for(input_data, magnitude)
        fakemag, err = self.predict(spectra, batch_size=batch_size)
        value = convert(fakemag[:, 0], mag)
        return value, {k: convert(fakemag[:, 0], mag, v[:, 0])[1] for k, v in err.items()}

    def predict_parallax(self, input_data, magnitude=None, batch_size=None):
        from ..conversions import fakemag_to_parallax

        return self._via_fakemag(input_data, magnitude, batch_size, fakemag_to_parallax)

    def predict_distance(self, input_data, magnitude=None, batch_size=None):
        from ..conversions import fakemag_to_distance

        return self._via_fakemag(input_data, magnitude, batch_size, fakemag_to_distance)

    def predict_zeropoint(self, features=None, mc_num=None, batch_size=4096, components=False, shared_masks=False):
        """Ensemble zero-point; see :meth:`GaiaCalBCNNBase.predict_zeropoint`.

        With ``components=True`` also returns ``{'mc': ..., 'ensemble': ...}``, the
        two parts of the error (Quantities in mas).
        """
        kwargs = {"shared_masks": True} if shared_masks else {}
        outs = [m.predict_zeropoint(features, mc_num=mc_num, batch_size=batch_size, **kwargs) for m in self.members]
        mean, mc_var, between = _combine(
            [o[0].to_value(u.mas) for o in outs], [o[1].to_value(u.mas) ** 2 for o in outs]
        )
        result = mean * u.mas, np.sqrt(mc_var + between) * u.mas
        if components:
            return (*result, {"mc": np.sqrt(mc_var) * u.mas, "ensemble": np.sqrt(between) * u.mas})
        return result

    def refit_zeropoint(self, input_data, parallax, parallax_error, magnitude=None, batch_size=None, components=False,
                        estimate=None):
        """Each member's :meth:`~astronn_gaiacal.models.GaiaCalBCNNBase.refit_zeropoint`, combined.

        The members that trained (:func:`~astronn_gaiacal.zeropoint.fit.usable_members`) are
        combined into one of the ensemble estimates of :mod:`astronn_gaiacal.studies.calibration`; the
        default, :data:`~astronn_gaiacal.zeropoint.estimates.DEFAULT_ESTIMATE`, is the one whose error the
        calibration study found calibrated (docs/calibration.rst).  A one-member ensemble works
        too (no between-member term).

        Parameters
        ----------
        input_data, parallax, parallax_error, magnitude, batch_size
            As for :meth:`~astronn_gaiacal.models.GaiaCalBCNNBase.refit_zeropoint`.
        components : bool
            Also return the parts of the error: ``{'statistical', 'ensemble', 'member_spread'}``
            (uas), ``'failed'`` (the indices of the members left out) and, for
            ``refit_consistency_ensemble``, ``'consistency_factor'``.
        estimate : str, optional
            ``'refit_ensemble'``, ``'refit_scaled_ensemble'``, ``'refit_curved_ensemble'`` or
            ``'refit_consistency_ensemble'``.

        Returns
        -------
        ZeropointFit, or (ZeropointFit, dict) with ``components=True``
        """
        from ..zeropoint.estimates import DEFAULT_ESTIMATE, ENSEMBLE_REFITS, ensemble_refits

        estimate = DEFAULT_ESTIMATE if estimate is None else estimate
        if estimate not in ENSEMBLE_REFITS:
            raise ValueError(f"estimate must be one of {list(ENSEMBLE_REFITS)}, got {estimate!r}")
        _, spectra, mag, plx, plx_err = self.members[0]._refit_inputs(input_data, parallax, parallax_error, magnitude)
        fits, _ = ensemble_refits(self.members, spectra, plx, plx_err, mag, batch_size=batch_size)
        combined, parts = fits[estimate]
        parts = {**parts, "failed": fits["failed"]}
        return (combined, parts) if components else combined

    def zeropoint(self, mc_num=None, components=False):
        """Constant-model zero-point ± its ensemble uncertainty, in micro-arcsec."""
        if self.offset != "constant":
            raise ValueError(f"zeropoint() is for offset='constant'; this ensemble has offset={self.offset!r}")
        out = self.predict_zeropoint(mc_num=mc_num, components=components)
        if components:
            return out[0].to(u.uas), out[1].to(u.uas), {k: v.to(u.uas) for k, v in out[2].items()}
        return out[0].to(u.uas), out[1].to(u.uas)


def load(folder):
    """Open a saved model folder: an astroNN folder or an ensemble folder.

    Parameters
    ----------
    folder : str or path

    Returns
    -------
    GaiaCalBCNNBase or DeepEnsemble (or any astroNN model for a foreign folder)
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder {folder!r} does not exist")
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        return DeepEnsemble.load(folder)
    if not os.path.isfile(os.path.join(folder, "astroNN_model_parameter.json")):
        raise FileNotFoundError(f"{folder!r} is neither an astroNN model folder nor an ensemble folder")
    from astroNN.models import load_folder

    return load_folder(folder)
