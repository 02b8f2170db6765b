"""Models on Dask workers: what a model folder holds (read on the client), loading it once per worker, seeding.

:func:`model_info` reads a model or ensemble folder's JSON (offset variant,
features, training ranges, a content hash) without building the model;
:func:`worker_model` loads the model once per worker process;
:func:`partition_seed` and :func:`inference_mode` make every partition's
numbers independent of the worker that computes it.
"""
import contextlib
import hashlib
import os
import sys
import threading

from ..io.model_folders import (MANIFEST, PARAMETER_FILE, ZEROPOINT_KEY, folder_kind, member_folders, read_manifest,
                                read_plugin_config)

__all__ = ["inference_mode", "model_info", "model_loads", "partition_seed", "resolve_feature_ranges", "worker_model"]

#: astroNN's weights file in a model folder (its size and time enter the model hash).
_WEIGHTS_FILE = "model_weights.h5"


def model_info(folder):
    """Offset variant, features, training ranges and a content hash of a model or ensemble folder.

    Reads the folder's JSON files only (no model is built).

    Parameters
    ----------
    folder : str or path

    Returns
    -------
    dict
        ``folder`` (absolute), ``offset``, ``offset_features``,
        ``feature_ranges`` (``{name: [low, high]}``, the union over an
        ensemble's members; None without stored ranges), ``spectrum_length``,
        ``members``, ``zeropoint_calibration`` (the stored calibrated zero-point,
        :meth:`~astronn_gaiacal.zeropoint.calibrated.CalibratedZeropoint.to_dict`, or None)
        and ``hash`` (of the parameter files and the weights' sizes and times).

    Raises
    ------
    FileNotFoundError
        Not a model or ensemble folder.
    ValueError
        A parameter file without the plugin's section (not saved by this package).
    """
    folder = os.path.abspath(os.fspath(folder))
    ensemble = folder_kind(folder) == "ensemble"
    members = member_folders(folder) if ensemble else [folder]
    files = [os.path.join(m, PARAMETER_FILE) for m in members] + ([os.path.join(folder, MANIFEST)] if ensemble else [])
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
        weights = os.path.join(os.path.dirname(path), _WEIGHTS_FILE)
        if os.path.isfile(weights):
            st = os.stat(weights)
            digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    blocks = [read_plugin_config(m) for m in members]
    first = blocks[0]
    ranges = None
    if first["offset"] == "multivariate" and all(b.get("feature_ranges") for b in blocks):
        # members of an ensemble see one training set (or bootstraps of it): the union is its range
        ranges = {
            name: [min(b["feature_ranges"][name][0] for b in blocks), max(b["feature_ranges"][name][1] for b in blocks)]
            for name in first["offset_features"]
        }
    calibration = (read_manifest(folder) if ensemble else first).get(ZEROPOINT_KEY)
    return {
        "folder": folder,
        "offset": first["offset"],
        "offset_features": list(first["offset_features"]),
        "feature_ranges": ranges,
        "spectrum_length": int(first["spectrum_length"]),
        "members": len(blocks),
        "zeropoint_calibration": calibration,
        "hash": digest.hexdigest()[:16],
    }


def resolve_feature_ranges(info, feature_ranges):
    """The training ranges to flag extrapolation with: ``feature_ranges`` if given, else the folder's.

    Parameters
    ----------
    info : dict
        :func:`model_info` of the model.
    feature_ranges : dict or None
        ``{feature: (low, high)}``.

    Returns
    -------
    dict or None
        ``{feature: [low, high]}`` (None for a model without features).

    Raises
    ------
    KeyError
        ``feature_ranges`` lacks one of the model's features.
    ValueError
        A multivariate model without ranges, or a range with low > high.
    """
    if feature_ranges is not None:
        missing = [n for n in info["offset_features"] if n not in feature_ranges]
        if missing:
            raise KeyError(f"feature_ranges lacks feature(s) {missing}; the model needs {info['offset_features']}")
        ranges = {n: [float(feature_ranges[n][0]), float(feature_ranges[n][1])] for n in info["offset_features"]}
    else:
        ranges = info["feature_ranges"]
    if info["offset"] == "multivariate" and ranges is None:
        raise ValueError(
            f"model folder {info['folder']} stores no training ranges of its features ('feature_ranges' in its "
            f"astronn_gaiacal parameters); pass feature_ranges={{name: (low, high)}} explicitly"
        )
    for name, (lo, hi) in (ranges or {}).items():
        if not lo <= hi:
            raise ValueError(f"feature_ranges[{name!r}] must be (low, high) with low <= high, got {(lo, hi)}")
    return ranges


# ---------------------------------------------------------------------- worker side
_MODELS = {}
_MODEL_LOADS = {}
_LOCK = threading.RLock()


def _worker_threads():
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def worker_model(folder):
    """The model saved in ``folder``, loaded once per process and kept (one load per Dask worker).

    Parameters
    ----------
    folder : str or path
        A model or ensemble folder (:func:`astronn_gaiacal.models.load`).  Its
        class must be importable on the worker (classes of this package are).

    Returns
    -------
    GaiaCalBCNNBase or DeepEnsemble
        With ``verbose = 0`` (no progress bars inside workers).

    Notes
    -----
    Inside a Dask worker, TensorFlow is limited to the worker's number of
    threads the first time a model is loaded, so ``n`` single-threaded
    workers use ``n`` cores.
    """
    from .._compat import tf
    from ..models import DeepEnsemble, load

    key = os.path.abspath(os.fspath(folder))
    with _LOCK:
        net = _MODELS.get(key)
        if net is None:
            nthreads = _worker_threads()
            if nthreads:
                with contextlib.suppress(RuntimeError):  # already initialised: keep TF's setting
                    tf.config.threading.set_intra_op_parallelism_threads(nthreads)
                    tf.config.threading.set_inter_op_parallelism_threads(nthreads)
            with contextlib.redirect_stdout(sys.stderr):
                net = load(key)
            for member in (net.members if isinstance(net, DeepEnsemble) else [net]):
                member.verbose = 0
            _MODELS[key] = net
            _MODEL_LOADS[key] = _MODEL_LOADS.get(key, 0) + 1
        return net


def model_loads():
    """``{folder: number of loads}`` in this process (what :func:`worker_model` did)."""
    return dict(_MODEL_LOADS)


def partition_seed(seed, key):
    """The random seed partition ``key`` is computed with, for a run seeded with ``seed``.

    Parameters
    ----------
    seed : int
    key : str
        Partition key: ``'part.00012'`` (Dask DataFrame partition 12, spectra
        file 12) or ``'Norder=3/Dir=0/Npix=191'`` (HATS pixel).

    Returns
    -------
    int
        In ``[0, 2**31)``.

    Examples
    --------
    >>> from astronn_gaiacal.distributed import partition_seed
    >>> partition_seed(0, "part.00000") == partition_seed(0, "part.00000")
    True
    >>> partition_seed(0, "part.00000") == partition_seed(0, "part.00001")
    False
    """
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@contextlib.contextmanager
def inference_mode(net, dropout, seed, key, which):
    """Seed (per partition) and, with ``dropout=False``, switch MC dropout off in the sub-models named ``which``.

    Parameters
    ----------
    net : GaiaCalBCNNBase or DeepEnsemble
    dropout : bool
    seed : int or None
        Run seed; the partition is seeded with ``partition_seed(seed, key)`` (None: not seeded).
    key : str
        Partition key.
    which : tuple of str
        Attributes of each member holding the Keras models to run without dropout.
    """
    from .._compat import keras
    from ..models.prediction import without_dropout

    with _LOCK, contextlib.ExitStack() as stack:
        if not dropout:
            stack.enter_context(without_dropout(net, which))
        if seed is not None:
            keras.utils.set_random_seed(partition_seed(seed, key))
        yield
