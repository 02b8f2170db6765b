"""Mock surveys as datasets: in memory, streamed to HDF5 files, split as in the paper, and plotted.

:func:`simulate_survey` and :func:`write_survey` give the same stars and
spectra (bit for bit); :func:`simulate_train_test` and :func:`write_train_test`
the paper's high-S/N training and low-S/N test sets; :func:`plot_survey` an
overview figure.
"""
import contextlib
import numbers
import os

import numpy as np
from tqdm.auto import tqdm

from ..constants import APOGEE_SPECTRUM_LENGTH, PAPER_SNR_SPLIT
from ..io.atomic import atomic_path
from ..io.dataset import Dataset, DatasetError, write_dataset
from ..io.hdf5 import spectra_writer
from ..plots import new_figure, save_figure
from .photometry import dr2_parallax_errors
from .population import apogee_ids, simulate_catalogue
from .seeds import seed_sequence
from .spectra import DIB_WAVELENGTH, NOISE_BLOCK, noisy_spectra, wavelength

__all__ = ["plot_survey", "simulate_survey", "simulate_train_test", "write_survey", "write_train_test"]


def _dataset(columns, units, attrs, spectra=None, spectra_err=None):
    return Dataset(spectra=spectra, spectra_err=spectra_err, columns=columns, units=units, attrs=attrs)


def _with_spectra(columns, units, attrs, key, dib, progress, desc):
    n = len(columns["teff"])
    spectra = np.empty((n, APOGEE_SPECTRUM_LENGTH), np.float32)
    spectra_err = np.empty_like(spectra)
    step = 8 * NOISE_BLOCK
    with tqdm(total=n, desc=desc, unit="star", disable=not progress) as bar:
        for s in range(0, n, step):
            e = min(s + step, n)
            spectra[s:e], spectra_err[s:e] = noisy_spectra(columns, s, e, key, dib)
            bar.update(e - s)
    attrs = dict(attrs, dib_strength=float(dib))
    return _dataset(columns, units, attrs, spectra, spectra_err)


def simulate_survey(n_stars, seed=0, snr="apogee", zeropoint=None, fractions=None, mag_limits=(7.0, 12.5),
                    dib=False, selection_slope=0.3, mag_error=0.02, progress=False, outliers=None):
    r"""Simulate a mock APOGEE x Gaia DR2 survey in memory.

    Parameters
    ----------
    n_stars : int
    seed : int or None
        Seeds everything (a :class:`numpy.random.SeedSequence`); ``None`` draws
        fresh entropy, recorded in ``attrs['seed']``.
    snr : 'apogee', float, (low, high) or callable
        ``'apogee'`` (default): S/N = 100 at Ks = 12.05 scaled with flux, with a
        0.12 dex spread; a number: that S/N for all; a pair: log-uniform in the
        range; a callable ``f(rng, n) -> array``.
    zeropoint : Quantity, 'constant', 'quadratic', 0 or callable
        Injected parallax zero-point.  Default (``None``/``'constant'``):
        ``PAPER_ZEROPOINT_UAS`` (-52.3 uas).  ``'quadratic'``: the paper's eq. 7
        in G (:func:`~astronn_gaiacal.simulate.population.paper_quadratic_zeropoint` for others); a callable gets the
        catalogue columns (``phot_g_mean_mag``, ``bp_rp``, ``teff``, ...) and
        returns mas (or an angle Quantity).
    fractions : dict, optional
        Population fractions ``{'rgb', 'rc', 'ms'}``; default :data:`~astronn_gaiacal.simulate.population.DEFAULT_FRACTIONS`.
    mag_limits : (float, float)
        Apparent Ks window of the survey.
    dib : bool or float
        Add the 15273 A diffuse interstellar band (strength relative to
        Zasowski et al. 2015); off by default, so spectra carry no distance
        information.
    selection_slope : float
        Extra targeting weight :math:`10^{-s\,K_s}` on the distance draw,
        favouring bright stars as APOGEE's short cohorts do (0: a pure
        magnitude-limited sample).
    mag_error : float
        Gaussian noise of the catalogue Ks (mag).
    progress : bool
        Show a tqdm bar.
    outliers : Outliers or dict, optional
        An outlier population (:class:`~astronn_gaiacal.simulate.outliers.Outliers`:
        fractions of unresolved binaries, mis-matched cross-matches and Gaia
        error tails); off by default.  When on, the column ``true_outlier``
        holds each star's kind (:data:`~astronn_gaiacal.simulate.outliers.OUTLIER_CODES`)
        and ``attrs['outliers']`` the settings.

    Returns
    -------
    Dataset
        Columns: spectra, spectra_err, mag, mag_ext, parallax, parallax_error,
        phot_g_mean_mag, bp_rp, teff, logg, fe_h, alpha_fe, c_n, snr, ra, dec,
        apogee_id, population and the truth: true_parallax, true_zeropoint,
        true_fakemag, true_distance, true_mass, true_absmag_ks, true_mag,
        true_luminosity.
    """
    columns, units, attrs = simulate_catalogue(n_stars, seed, snr, zeropoint, fractions, mag_limits,
                                               selection_slope, mag_error, outliers)
    key = seed_sequence(seed if seed is not None else int(attrs["seed"]))
    return _with_spectra(columns, units, attrs, key, _dib_strength(dib), progress, "simulating spectra")


def _dib_strength(dib):
    if isinstance(dib, bool):
        return 1.0 if dib else 0.0
    if not isinstance(dib, numbers.Real) or not np.isfinite(dib) or dib < 0:
        raise ValueError(f"dib must be a bool or a non-negative number, got {dib!r}")
    return float(dib)


def _write(path, columns, units, attrs, key, dib, overwrite, chunk_size, progress):
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    step = -(-int(chunk_size) // NOISE_BLOCK) * NOISE_BLOCK
    n = len(columns["teff"])
    attrs = dict(attrs, dib_strength=float(dib))
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_dataset(tmp, _dataset(columns, units, attrs), overwrite=True)
        with spectra_writer(tmp, n, APOGEE_SPECTRUM_LENGTH) as (out, out_err):
            with tqdm(total=n, desc=f"writing {os.path.basename(os.fspath(path))}", unit="star",
                      disable=not progress) as bar:
                for s in range(0, n, step):
                    e = min(s + step, n)
                    out[s:e], out_err[s:e] = noisy_spectra(columns, s, e, key, dib)
                    bar.update(e - s)
    return os.fspath(path)


def write_survey(path, n_stars, seed=0, snr="apogee", zeropoint=None, fractions=None, mag_limits=(7.0, 12.5),
                 dib=False, selection_slope=0.3, mag_error=0.02, overwrite=False, chunk_size=2048, progress=True,
                 outliers=None):
    """Simulate a survey and write it in the HDF5 dataset format, streaming spectra in chunks.

    Identical (bit for bit) to ``simulate_survey(...).write(path)`` for any
    ``chunk_size``, but holds only one chunk of spectra in memory.  The file is
    written atomically.

    Parameters
    ----------
    path : str
        Output ``.h5`` file.
    chunk_size : int
        Stars per chunk (rounded up to a multiple of 256).
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.
    progress : bool
        Show a tqdm bar.
    **others
        As :func:`simulate_survey`.

    Returns
    -------
    str
        ``path``.
    """
    columns, units, attrs = simulate_catalogue(n_stars, seed, snr, zeropoint, fractions, mag_limits,
                                               selection_slope, mag_error, outliers)
    key = seed_sequence(seed if seed is not None else int(attrs["seed"]))
    return _write(path, columns, units, attrs, key, _dib_strength(dib), overwrite, chunk_size, progress)


def _train_test_catalogues(n_train, n_test, seed, snr_split, kwargs):
    """Draw pools of stars until there are n_train with SNR > split and n_test with SNR < split."""
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    if kwargs.get("snr", "apogee") != "apogee":
        raise ValueError("simulate_train_test splits the 'apogee' S/N model at snr_split; do not pass snr")
    base = seed_sequence(seed)
    pools, n_hi, n_lo = [], 0, 0
    for k in range(64):
        size = max(2 * (n_train + n_test) // (k + 1), 512)
        cols, units, attrs = simulate_catalogue(size, np.random.SeedSequence(base.entropy, spawn_key=(1, k)), **kwargs)
        pools.append(cols)
        n_hi += int(np.sum(cols["snr"] > snr_split))
        n_lo += int(np.sum(cols["snr"] < snr_split))
        if n_hi >= n_train and n_lo >= n_test:
            break
    else:
        raise RuntimeError("could not draw enough stars on both sides of the S/N split; check mag_limits")
    pool = {name: np.concatenate([p[name] for p in pools]) for name in pools[0]}
    hi = np.flatnonzero(pool["snr"] > snr_split)[:n_train]
    lo = np.flatnonzero(pool["snr"] < snr_split)[:n_test]
    attrs.update(seed=str(base.entropy), seed_spawn_key=[], zeropoint_mean_uas=None)
    out = []
    for part, (index, label) in enumerate(((hi, f"train (snr > {snr_split:g})"), (lo, f"test (snr < {snr_split:g})"))):
        cols = {name: values[index] for name, values in pool.items()}
        cols["apogee_id"] = apogee_ids(cols["ra"], cols["dec"])
        a = dict(attrs, split=label, zeropoint_mean_uas=float(np.mean(cols["true_zeropoint"]) * 1000.0))
        out.append((cols, units, a, np.random.SeedSequence(base.entropy, spawn_key=(2, part))))
    return out


def simulate_train_test(n_train, n_test, seed=0, snr_split=PAPER_SNR_SPLIT, dib=False, progress=False, **kwargs):
    """The paper's setup: one mock survey split into a high-S/N training and a low-S/N test set.

    Stars are drawn with the ``'apogee'`` S/N model (S/N tied to Ks), so the
    test set is fainter and more distant, as in the paper (35,112 training
    stars with S/N > 200, 33,468 test stars with S/N < 200).

    Parameters
    ----------
    n_train, n_test : int
    seed : int
    snr_split : float
    dib, progress : as :func:`simulate_survey`
    **kwargs
        ``zeropoint``, ``fractions``, ``mag_limits``, ``selection_slope``, ``mag_error``, ``outliers``.

    Returns
    -------
    train, test : Dataset
    """
    dib = _dib_strength(dib)
    return tuple(
        _with_spectra(cols, units, attrs, key, dib, progress, f"simulating {attrs['split'].split()[0]} spectra")
        for cols, units, attrs, key in _train_test_catalogues(n_train, n_test, seed, snr_split, kwargs)
    )


def write_train_test(train_path, test_path, n_train, n_test, seed=0, snr_split=PAPER_SNR_SPLIT, dib=False,
                     overwrite=False, chunk_size=2048, progress=True, **kwargs):
    """Write :func:`simulate_train_test`'s two datasets (same content) to HDF5 files, streaming spectra.

    Returns
    -------
    train_path, test_path : str
    """
    dib = _dib_strength(dib)
    for p in (train_path, test_path):
        if os.path.exists(p) and not overwrite:
            raise FileExistsError(f"{p} already exists; pass overwrite=True to replace it")
    with contextlib.ExitStack() as stack:  # both files appear together at the end, or neither (interrupted)
        tmps = [stack.enter_context(atomic_path(p, overwrite=overwrite)) for p in (train_path, test_path)]
        for tmp, (cols, units, attrs, key) in zip(tmps, _train_test_catalogues(n_train, n_test, seed, snr_split,
                                                                                kwargs)):
            _write(tmp, cols, units, attrs, key, dib, True, chunk_size, progress)
    return os.fspath(train_path), os.fspath(test_path)


# ---------------------------------------------------------------------------
# Figure


def plot_survey(dataset, path):
    """Overview figure of a mock survey (PNG): Kiel diagram, M_Ks, distances, S/N, parallax errors, zero-point, spectra.

    Parameters
    ----------
    dataset : Dataset
        A simulated dataset (needs the ``true_*`` columns).
    path : str
        Output PNG (written atomically, replaced if it exists).

    Returns
    -------
    str
        ``path``.
    """
    need = ("teff", "logg", "population", "true_absmag_ks", "true_distance", "mag", "snr",
            "phot_g_mean_mag", "parallax_error", "true_zeropoint", "mag_ext")
    missing = [c for c in need if c not in dataset]
    if missing:
        raise DatasetError(f"plot_survey needs the simulator's column(s) {missing}")
    fig = new_figure(figsize=(18, 8))
    ax = fig.subplots(2, 4)
    pop = np.asarray(dataset["population"])
    colours = {"rgb": "C3", "rc": "C1", "ms": "C0"}
    for name, colour in colours.items():
        sel = pop == name
        ax[0, 0].scatter(dataset["teff"][sel], dataset["logg"][sel], s=2, c=colour, label=name)
        ax[0, 1].scatter(dataset["teff"][sel], dataset["true_absmag_ks"][sel], s=2, c=colour)
    ax[0, 0].set(xlabel="Teff (K)", ylabel="log g", title="Kiel diagram")
    ax[0, 0].invert_xaxis()
    ax[0, 0].invert_yaxis()
    ax[0, 0].legend(markerscale=4)
    ax[0, 1].axhline(-1.61, color="k", ls=":", lw=1, label="red clump $M_{K_s}=-1.61$")
    ax[0, 1].set(xlabel="Teff (K)", ylabel="$M_{K_s}$", title="absolute magnitude")
    ax[0, 1].invert_xaxis()
    ax[0, 1].invert_yaxis()
    ax[0, 1].legend()
    ax[0, 2].hist(np.log10(dataset["true_distance"]), bins=50, color="0.4")
    ax[0, 2].set(xlabel="log10 distance (pc)", ylabel="stars", title="distances")
    ax[0, 3].scatter(dataset["mag"], dataset["snr"], s=2, c=dataset["mag_ext"], cmap="viridis")
    ax[0, 3].axhline(PAPER_SNR_SPLIT, color="k", ls=":", lw=1)
    ax[0, 3].set(xlabel="$K_s$ (colour: $A_{K_s}$)", ylabel="S/N", yscale="log", title="S/N vs magnitude")
    g = dataset["phot_g_mean_mag"]
    ax[1, 0].scatter(g, dataset["parallax_error"], s=2, c="0.5", label="simulated")
    real_g, real_err, edges, _ = dr2_parallax_errors()
    centres = 0.5 * (edges[1:] + edges[:-1])
    med = [np.median(real_err[(real_g >= lo) & (real_g < hi)]) for lo, hi in zip(edges[:-1], edges[1:])]
    ax[1, 0].plot(centres, med, "k-", lw=1, label="DR2 APOGEE median")
    ax[1, 0].set(xlabel="G", ylabel="parallax error (mas)", yscale="log", title="Gaia DR2 parallax errors")
    ax[1, 0].legend()
    ax[1, 1].scatter(g, np.asarray(dataset["true_zeropoint"]) * 1000.0, s=2, c="C2")
    ax[1, 1].set(xlabel="G", ylabel="injected zero-point (uas)", title=dataset.attrs.get("zeropoint_model", ""))
    ax[1, 1].title.set_fontsize(8)
    lam = wavelength()
    window = (lam > 15200) & (lam < 15350)
    if "spectra" in dataset:
        for i, name in enumerate(colours):
            idx = np.flatnonzero(pop == name)
            if len(idx):
                ax[1, 2].plot(lam[window], dataset["spectra"][idx[0], window] + 0.4 * i, lw=0.7,
                              c=colours[name], label=f"{name} Teff={dataset['teff'][idx[0]]:.0f}")
        ax[1, 2].axvline(DIB_WAVELENGTH, color="k", ls=":", lw=1)
        ax[1, 2].set(xlabel="wavelength (A)", ylabel="flux + offset", title="spectra (dotted: DIB)")
        ax[1, 2].legend(fontsize=7)
    ax[1, 3].hist(dataset["mag_ext"], bins=50, color="C4")
    ax[1, 3].set(xlabel="$A_{K_s}$", ylabel="stars", title="extinction")
    fig.suptitle(f"mock survey: {len(dataset)} stars")
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")
