r"""Catalogue-scale inference on Dask and LSDB: zero-points for all Gaia stars, distances for millions of spectra.

Nothing here schedules work itself: the partitions of a Dask DataFrame, an
LSDB (HATS) catalogue or a list of spectra files are Dask tasks, run by a
``distributed`` cluster (a :class:`~distributed.LocalCluster` on this machine
by default, or any running scheduler given by its address).

* :func:`add_zeropoint` -- lazy: the model's offset sub-network applied with
  ``map_partitions``, adding ``zeropoint``, ``zeropoint_error`` (mas) and
  ``zeropoint_out_of_range`` (bool) to every partition.
* :func:`zeropoint_catalog` -- the same, computed on a cluster and written as
  one Parquet file per partition (a HATS catalogue for an LSDB input).
* :func:`predict_partitioned` -- distances and parallaxes (paper Table-1
  columns) for spectra stored as partitioned HDF5 or Parquet files, with MC
  dropout, streamed in batches of rows per partition.
* :func:`read_manifest` -- the state of an output folder.

Each worker process loads a model folder once (:func:`worker_model`) and keeps
it for all the partitions it runs.

Output folders are resumable.  Every partition file is written atomically
(temporary name, then rename) and carries the run's configuration hash in
its Parquet metadata; ``_manifest.json`` lists the partitions written and
says ``"complete": true`` only once every partition is there.  A rerun with
the same configuration skips the partitions already written; a failed
partition is retried by Dask (``retries``) before the run gives up, and the
partitions that did succeed are kept for the next run.

Results equal the in-process model: partition ``key`` is computed after
``keras.utils.set_random_seed(partition_seed(seed, key))``, so
``net.predict_zeropoint`` on the same rows with the same seed gives the same
numbers, whichever worker runs it and however often it is retried; with
``dropout=False`` the offset network is deterministic.

Examples
--------
A Dask DataFrame of Gaia stars and a trained multivariate model folder
(``model_folder``):

>>> import dask.dataframe as dd                                 # doctest: +SKIP
>>> from astronn_gaiacal import scale                           # doctest: +SKIP
>>> stars = dd.read_parquet("gaia_dr3_subset/")                 # doctest: +SKIP
>>> summary = scale.zeropoint_catalog(model_folder, stars, "zp_out/", mc_num=50)  # doctest: +SKIP
>>> summary["complete"], summary["rows"]                        # doctest: +SKIP
(True, 1000000)
>>> scale.read_manifest("zp_out/")["complete"]                  # doctest: +SKIP
True
"""
import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
import threading
import time

import numpy as np

from .io.atomic import atomic_path
from ._versions import __version__

__all__ = [
    "MANIFEST_NAME",
    "ZEROPOINT_COLUMNS",
    "IncompleteOutputError",
    "PartitionFailure",
    "add_zeropoint",
    "cluster_client",
    "partition_seed",
    "predict_partitioned",
    "read_manifest",
    "worker_model",
    "zeropoint_catalog",
]

#: Name of the manifest in an output folder (a leading '_' keeps Parquet readers off it).
MANIFEST_NAME = "_manifest.json"
#: Columns added by :func:`add_zeropoint`.
ZEROPOINT_COLUMNS = ("zeropoint", "zeropoint_error", "zeropoint_out_of_range")
#: Key of the partition metadata in each Parquet file's schema metadata.
_PARQUET_KEY = b"astronn_gaiacal"
_FORMAT = "astronn_gaiacal partitioned output"
_SPECTRA_ENDINGS = (".h5", ".hdf5", ".hdf", ".parquet", ".pq", ".fits", ".fit")


class IncompleteOutputError(RuntimeError):
    """An output folder whose manifest does not (yet) say ``complete``."""


class PartitionFailure(RuntimeError):
    """Some partitions failed after Dask's retries; the others are written and a rerun resumes.

    Attributes
    ----------
    failed : dict
        ``{partition key: error message}``.
    summary : dict
        The run summary (see :func:`zeropoint_catalog`).
    """

    def __init__(self, message, failed, summary):
        super().__init__(message)
        self.failed = failed
        self.summary = summary


# ============================================================ model folders (client side, no TensorFlow)
def _parameter_files(folder):
    from .models.ensemble import MANIFEST as ENSEMBLE_MANIFEST

    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder {folder!r} does not exist")
    ens = os.path.join(folder, ENSEMBLE_MANIFEST)
    if os.path.isfile(ens):
        with open(ens) as f:
            members = json.load(f)["members"]
        return [os.path.join(folder, m, "astroNN_model_parameter.json") for m in members], ens
    path = os.path.join(folder, "astroNN_model_parameter.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} is neither an astroNN model folder nor an ensemble folder")
    return [path], None


def _model_info(folder):
    """Offset variant, features, training ranges and a content hash of a model folder, read from its JSON."""
    from .models.base import PLUGIN_KEY

    paths, ens = _parameter_files(folder)
    digest = hashlib.sha256()
    blocks = []
    for path in paths + ([ens] if ens else []):
        with open(path, "rb") as f:
            raw = f.read()
        digest.update(raw)
        weights = os.path.join(os.path.dirname(path), "model_weights.h5")
        if os.path.isfile(weights):
            st = os.stat(weights)
            digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        if path != ens:
            block = json.loads(raw).get(PLUGIN_KEY)
            if block is None:
                raise ValueError(f"{path} has no '{PLUGIN_KEY}' section: not saved by astronn_gaiacal")
            blocks.append(block)
    first = blocks[0]
    ranges = None
    if first["offset"] == "multivariate" and all(b.get("feature_ranges") for b in blocks):
        # members of an ensemble see one training set (or bootstraps of it): the union is its range
        ranges = {
            name: [min(b["feature_ranges"][name][0] for b in blocks), max(b["feature_ranges"][name][1] for b in blocks)]
            for name in first["offset_features"]
        }
    return {
        "folder": os.path.abspath(os.fspath(folder)),
        "offset": first["offset"],
        "offset_features": list(first["offset_features"]),
        "feature_ranges": ranges,
        "spectrum_length": int(first["spectrum_length"]),
        "members": len(blocks),
        "hash": digest.hexdigest()[:16],
    }


def _check_ranges(info, feature_ranges):
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


# ============================================================ worker side
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
    key = os.path.abspath(os.fspath(folder))
    with _LOCK:
        net = _MODELS.get(key)
        if net is None:
            nthreads = _worker_threads()
            from ._compat import tf
            from .models import load

            if nthreads:
                with contextlib.suppress(RuntimeError):  # already initialised: keep TF's setting
                    tf.config.threading.set_intra_op_parallelism_threads(nthreads)
                    tf.config.threading.set_inter_op_parallelism_threads(nthreads)
            with contextlib.redirect_stdout(sys.stderr):
                net = load(key)
            for member in getattr(net, "members", [net]):
                member.verbose = 0
            _MODELS[key] = net
            _MODEL_LOADS[key] = _MODEL_LOADS.get(key, 0) + 1
        return net


def _model_loads():
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


def _dask_key(number):
    return f"part.{int(number):05d}"


def _pixel_key(pixel):
    return f"Norder={pixel.order}/Dir={pixel.dir}/Npix={pixel.pixel}"


@contextlib.contextmanager
def _inference_mode(net, dropout, seed, key, which):
    """Seed (per partition) and, with ``dropout=False``, switch MC dropout off in the sub-models named ``which``."""
    from ._compat import keras
    from .nn.inference import dropout_disabled

    with _LOCK, contextlib.ExitStack() as stack:
        if not dropout:
            for member in getattr(net, "members", [net]):
                for name in which:
                    if getattr(member, name, None) is not None:
                        stack.enter_context(dropout_disabled(getattr(member, name)))
        if seed is not None:
            keras.utils.set_random_seed(partition_seed(seed, key))
        yield


def _float_column(df, name):
    col = df[name]
    try:
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise TypeError(f"offset feature column {name!r} is not numeric (dtype {col.dtype}): {err}") from None


def _out_of_range(features, ranges):
    flag = None
    for name, (lo, hi) in ranges.items():
        x = features[name]
        bad = np.isfinite(x) & ((x < lo) | (x > hi))
        flag = bad if flag is None else flag | bad
    return flag


def _zeropoint_frame(df, folder, ranges, mc_num, dropout, seed, key, batch_size):
    """One partition with the three zero-point columns appended (row count and order kept)."""
    import pandas as pd

    net = worker_model(folder)
    n = len(df)
    out = df.copy()
    mc = int(mc_num) if dropout else 1
    if net.offset == "constant":
        with _inference_mode(net, dropout, seed, key, ("offset_model",)):
            value, error = net.predict_zeropoint(mc_num=mc)
        zp, zp_err = np.full(n, value.to_value("mas")), np.full(n, error.to_value("mas"))
        flag = np.zeros(n, bool)
    else:
        feats = {name: _float_column(df, name) for name in net.offset_features}
        if n:
            with _inference_mode(net, dropout, seed, key, ("offset_model",)):
                zp_q, err_q = net.predict_zeropoint(feats, mc_num=mc, batch_size=batch_size)
            zp, zp_err = zp_q.to_value("mas"), err_q.to_value("mas")
        else:
            zp, zp_err = np.empty(0), np.empty(0)
        flag = _out_of_range(feats, ranges)
    out["zeropoint"] = pd.Series(np.asarray(zp, np.float64), index=df.index)
    out["zeropoint_error"] = pd.Series(np.asarray(zp_err, np.float64), index=df.index)
    out["zeropoint_out_of_range"] = pd.Series(np.asarray(flag, bool), index=df.index)
    return out


def _zeropoint_dask_partition(df, folder, ranges, mc_num, dropout, seed, batch_size, partition_info=None):
    number = (partition_info or {}).get("number", 0)
    return _zeropoint_frame(df, folder, ranges, mc_num, dropout, seed, _dask_key(number), batch_size)


def _zeropoint_pixel_partition(df, pixel, folder, ranges, mc_num, dropout, seed, batch_size):
    return _zeropoint_frame(df, folder, ranges, mc_num, dropout, seed, _pixel_key(pixel), batch_size)


def _is_lsdb(obj):
    return type(obj).__module__.startswith("lsdb.")


def _zeropoint_meta(meta):
    import pandas as pd

    meta = meta.iloc[:0].copy()
    meta["zeropoint"] = pd.Series(dtype=np.float64)
    meta["zeropoint_error"] = pd.Series(dtype=np.float64)
    meta["zeropoint_out_of_range"] = pd.Series(dtype=bool)
    return meta


def add_zeropoint(frame, model, mc_num=100, dropout=True, seed=0, batch_size=65536, feature_ranges=None):
    """Lazily add the model's zero-point to every partition of a Dask DataFrame or LSDB catalogue.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame or lsdb.Catalog
        Stars with the model's offset-feature columns (e.g. ``phot_g_mean_mag``,
        ``bp_rp``, ``teff``).  Nothing is computed here.
    model : str or path
        Model or ensemble folder; loaded once in each worker (:func:`worker_model`).
    mc_num : int
        MC-dropout passes per star (with ``dropout=True``).
    dropout : bool
        ``False`` runs the offset network once with dropout off:
        deterministic, ``zeropoint_error`` = 0.
    seed : int or None
        Partition ``key`` is computed after
        ``keras.utils.set_random_seed(partition_seed(seed, key))``; ``None``
        leaves the random state alone (not reproducible).
    batch_size : int
        Stars per compiled inference call.
    feature_ranges : dict, optional
        ``{feature: (low, high)}``; defaults to the training ranges stored in
        the model folder.

    Returns
    -------
    dask.dataframe.DataFrame or lsdb.Catalog
        ``frame`` with ``zeropoint`` and ``zeropoint_error`` (float64, mas;
        NaN where a feature is missing; convention ``parallax_gaia =
        parallax_true + zeropoint``) and ``zeropoint_out_of_range`` (True where
        a feature lies outside its training range: an extrapolation) appended.
        Rows keep their number, order and index in every partition.

    Raises
    ------
    KeyError
        A feature column is missing from ``frame``.
    ValueError
        A model without a zero-point (``offset='none'``), a multivariate
        model without stored ranges (and no ``feature_ranges``), or bad
        ``mc_num``/``batch_size``.
    """
    info = _model_info(model)
    if info["offset"] == "none":
        raise ValueError(f"model {info['folder']} was trained with offset='none': it has no zero-point model")
    ranges = _check_ranges(info, feature_ranges)
    if int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    columns = list(frame.columns)
    missing = [n for n in info["offset_features"] if n not in columns]
    if info["offset"] == "multivariate" and missing:
        raise KeyError(f"frame lacks offset feature column(s) {missing}; the model needs {info['offset_features']}")
    clash = [c for c in ZEROPOINT_COLUMNS if c in columns]
    if clash:
        raise ValueError(f"frame already has column(s) {clash}; drop or rename them first")
    args = (info["folder"], ranges, int(mc_num), bool(dropout), seed, int(batch_size))
    if _is_lsdb(frame):
        meta = _zeropoint_meta(frame.meta)
        return frame.map_partitions(_zeropoint_pixel_partition, *args, meta=meta, include_pixel=True)
    import dask.dataframe as dd

    if not isinstance(frame, dd.DataFrame):
        raise TypeError(f"frame must be a dask DataFrame or an lsdb Catalog, got {type(frame).__name__}")
    return frame.map_partitions(_zeropoint_dask_partition, *args, meta=_zeropoint_meta(frame._meta))


# ============================================================ cluster
@contextlib.contextmanager
def cluster_client(scheduler=None, n_workers=None, threads_per_worker=1):
    """A ``distributed.Client``: on a running cluster, or on a new LocalCluster closed afterwards.

    Parameters
    ----------
    scheduler : str, distributed.Client or None
        ``None``: start a :class:`~distributed.LocalCluster` on this machine;
        a string: the address of a running scheduler (``'tcp://host:8786'``);
        a Client: used as it is (and left open).
    n_workers : int, optional
        Workers of the LocalCluster; default: one per CPU core.
    threads_per_worker : int
        Threads per LocalCluster worker (each worker is one process).

    Yields
    ------
    distributed.Client

    Examples
    --------
    >>> from astronn_gaiacal.distributed import cluster_client
    >>> with cluster_client(n_workers=1) as client:                 # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    1
    """
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise TypeError(f"scheduler must be an address string or a distributed.Client, got {scheduler!r}")
        with Client(scheduler) as client:
            yield client
        return
    n_workers = int(n_workers or os.cpu_count() or 1)
    if n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    with LocalCluster(n_workers=n_workers, threads_per_worker=int(threads_per_worker), processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


# ============================================================ output folders
def _config_hash(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(out, require_complete=False):
    """The manifest of an output folder written by :func:`zeropoint_catalog` or :func:`predict_partitioned`.

    Parameters
    ----------
    out : str or path
    require_complete : bool
        Raise :class:`IncompleteOutputError` unless every partition is written.

    Returns
    -------
    dict
        ``format``, ``version``, ``kind``, ``config`` (and its ``config_hash``),
        ``n_partitions``, ``partitions`` (``{key: {'file', 'rows', ...}}`` of
        the partitions written), ``complete``, ``rows``, ``updated``.

    Raises
    ------
    FileNotFoundError
        No manifest in ``out``.
    """
    path = os.path.join(os.fspath(out), MANIFEST_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{out} has no {MANIFEST_NAME}: not an astronn_gaiacal output folder")
    with open(path) as f:
        manifest = json.load(f)
    if require_complete and not manifest.get("complete"):
        done = len(manifest.get("partitions", {}))
        raise IncompleteOutputError(
            f"{out} is incomplete: {done} of {manifest.get('n_partitions')} partitions written; rerun to resume"
        )
    return manifest


def _write_manifest(out, manifest):
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with atomic_path(os.path.join(out, MANIFEST_NAME), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)


def _parquet_record(path):
    """The astronn_gaiacal metadata a partition file was written with, or None."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    raw = meta.get(_PARQUET_KEY)
    return json.loads(raw) if raw else None


def _write_parquet(df, path, record):
    """Write one partition atomically, with ``record`` in the file's schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df.to_pyarrow() if hasattr(df, "to_pyarrow") else pa.Table.from_pandas(df, preserve_index=True)
    meta = dict(table.schema.metadata or {})
    meta[_PARQUET_KEY] = json.dumps(record).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path, overwrite=True) as tmp:
        pq.write_table(table, tmp)


def _write_zeropoint_part(df, out, rel, key, config_hash, pixel=None):
    start = time.perf_counter()
    if pixel is not None and len(df):
        from hats.pixel_math import spatial_index_to_healpix

        pix = spatial_index_to_healpix(np.asarray(df.index), target_order=pixel[0])
        if not np.all(pix == pixel[1]):
            raise RuntimeError(f"partition {key} holds rows outside its HEALPix pixel")
    record = {"key": key, "config_hash": config_hash, "rows": int(len(df)),
              "n_out_of_range": int(np.asarray(df["zeropoint_out_of_range"]).sum()),
              "n_missing": int(np.isnan(np.asarray(df["zeropoint"], dtype=float)).sum())}
    _write_parquet(df, os.path.join(out, rel), record)
    return {**record, "file": rel, "seconds": time.perf_counter() - start}


class _Job:
    """Partitions of one run: keys, relative file names, and a function building each task."""

    def __init__(self, kind, config, keys, files, make_task, finalize=None):
        self.kind = kind
        self.config = config
        self.config_hash = _config_hash(config)
        self.keys = list(keys)
        self.files = dict(zip(self.keys, files))
        self.make_task = make_task
        self.finalize = finalize


def _prepare_out(out, job, overwrite):
    """Make ``out`` ready; return the manifest holding the partitions already written there."""
    out = os.path.abspath(os.fspath(out))
    fresh = {"format": _FORMAT, "version": __version__, "kind": job.kind, "config": job.config,
             "config_hash": job.config_hash, "n_partitions": len(job.keys), "partitions": {},
             "complete": False, "rows": 0}
    if os.path.isdir(out) and os.listdir(out):
        path = os.path.join(out, MANIFEST_NAME)
        if not os.path.isfile(path):
            raise FileExistsError(f"{out} exists and is not an astronn_gaiacal output folder (no {MANIFEST_NAME}); "
                                  f"choose an empty or new folder")
        old = read_manifest(out)
        if old.get("config_hash") != job.config_hash:
            if not overwrite:
                raise FileExistsError(
                    f"{out} holds the output of another run (different model, input or options; config hash "
                    f"{old.get('config_hash')} != {job.config_hash}); pass overwrite=True to replace it"
                )
            shutil.rmtree(out)
        else:
            fresh["partitions"] = {k: v for k, v in old.get("partitions", {}).items() if k in job.files}
    elif os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"{out} exists and is not a folder")
    os.makedirs(out, exist_ok=True)
    # keep only partitions whose file is there and was written by this configuration; adopt files that a
    # killed run wrote after its last manifest update
    done = {}
    for key, rel in job.files.items():
        path = os.path.join(out, rel)
        if not os.path.isfile(path):
            continue
        record = _parquet_record(path)
        if record and record.get("config_hash") == job.config_hash and record.get("key") == key:
            done[key] = {**fresh["partitions"].get(key, {}), **record, "file": rel}
    fresh["partitions"] = done
    fresh["rows"] = int(sum(p["rows"] for p in done.values()))
    return out, fresh


@contextlib.contextmanager
def _released(client, futures):
    """Forget the run's futures afterwards: an erred key kept alive would make a rerun fail at once."""
    try:
        yield
    finally:
        client.cancel(futures)
        futures.clear()


def _run(job, out, client_args, retries, overwrite, max_partitions, progress):
    from distributed import as_completed
    from tqdm.auto import tqdm

    out, manifest = _prepare_out(out, job, overwrite)
    todo = [k for k in job.keys if k not in manifest["partitions"]]
    skipped = len(job.keys) - len(todo)
    if max_partitions is not None:
        if int(max_partitions) < 0:
            raise ValueError(f"max_partitions must be >= 0, got {max_partitions!r}")
        todo = todo[: int(max_partitions)]
    _write_manifest(out, manifest)
    failed, computed = {}, []
    start = time.perf_counter()
    rows_now = 0
    if todo:
        with cluster_client(**client_args) as client:
            tasks = [job.make_task(key, out) for key in todo]
            futures = client.compute(tasks, retries=int(retries))
            index = {f.key: k for f, k in zip(futures, todo)}
            last = time.monotonic()
            with tqdm(total=len(job.keys), initial=skipped, unit="partition", desc=job.kind,
                      disable=not progress) as bar, _released(client, futures):
                for future in as_completed(futures):
                    key = index[future.key]
                    if future.status == "finished":
                        result = future.result()
                        manifest["partitions"][key] = result
                        manifest["rows"] += result["rows"]
                        rows_now += result["rows"]
                        computed.append(key)
                    else:
                        exc = future.exception()
                        failed[key] = f"{type(exc).__name__}: {exc}"
                    bar.update(1)
                    if time.monotonic() - last > 2.0:
                        _write_manifest(out, manifest)
                        last = time.monotonic()
    seconds = time.perf_counter() - start
    complete = len(manifest["partitions"]) == len(job.keys)
    if complete and job.finalize is not None:
        manifest["finalized"] = job.finalize(out, manifest)
    manifest["complete"] = complete
    if failed:
        manifest["failed"] = failed
    else:
        manifest.pop("failed", None)
    _write_manifest(out, manifest)
    summary = {
        "out": out, "kind": job.kind, "n_partitions": len(job.keys), "computed": computed,
        "skipped": skipped, "failed": sorted(failed), "complete": complete, "rows": manifest["rows"],
        "rows_computed": rows_now, "seconds": seconds,
        "rows_per_s": rows_now / seconds if rows_now and seconds > 0 else float("nan"),
    }
    if failed:
        first = next(iter(failed.items()))
        raise PartitionFailure(
            f"{len(failed)} of {len(todo)} partition(s) failed after {retries} retries (first: {first[0]}: "
            f"{first[1]}); {len(manifest['partitions'])} of {len(job.keys)} are written to {out}; rerun to resume",
            failed, summary,
        )
    return summary


# ============================================================ zero-point catalogues
def _open_catalog(catalog, columns=None):
    """A Dask DataFrame or LSDB catalogue from a path (Parquet file/folder/glob, or a HATS catalogue)."""
    if not isinstance(catalog, (str, os.PathLike)):
        return catalog
    path = os.fspath(catalog)
    if os.path.isdir(path) and any(os.path.isfile(os.path.join(path, p))
                                   for p in ("hats.properties", "collection.properties", "properties")):
        import lsdb

        return lsdb.open_catalog(path, columns=columns) if columns else lsdb.open_catalog(path)
    if not (os.path.exists(path) or glob.glob(path)):
        raise FileNotFoundError(f"no such catalogue: {path}")
    if os.path.isfile(path) and not path.lower().endswith((".parquet", ".pq")):
        raise ValueError(f"catalog must be Parquet (file, folder or glob) or a HATS catalogue, got {path}")
    import dask.dataframe as dd

    return dd.read_parquet(path, columns=columns)


def _input_token(frame):
    """Identifies the input's data: Dask's graph name, or the HATS catalogue's properties."""
    if _is_lsdb(frame):
        info = frame.hc_structure.catalog_info
        return f"hats:{info.catalog_name}:{info.total_rows}"
    return getattr(frame, "_name", None)


def _finalize_hats(source):
    def finalize(out, manifest):
        import hats
        from hats.catalog import PartitionInfo
        from hats.pixel_math import HealpixPixel

        hats.io.write_parquet_metadata(out)
        pixels = [HealpixPixel(*p) for p in manifest["config"]["pixels"]]
        PartitionInfo(pixels).write_to_file(os.path.join(out, "partition_info.csv"))
        counts = [p["rows"] for p in manifest["partitions"].values()]
        info = source.hc_structure.catalog_info.copy_and_update(
            catalog_name=f"{source.hc_structure.catalog_info.catalog_name}_zeropoint",
            total_rows=int(sum(counts)), hats_max_rows=int(max(counts)) if counts else 0,
        )
        info.to_properties_file(out)
        return "hats"

    return finalize


def zeropoint_catalog(model, catalog, out, *, scheduler=None, n_workers=None, mc_num=100, dropout=True, seed=0,
                      batch_size=65536, feature_ranges=None, columns=None, retries=2, overwrite=False,
                      max_partitions=None, progress=True):
    """Zero-points of a whole catalogue, computed on a Dask cluster and written per partition.

    Parameters
    ----------
    model : str or path
        Model or ensemble folder with a zero-point model.
    catalog : str, path, dask.dataframe.DataFrame or lsdb.Catalog
        Parquet file, folder or glob (read with ``dask.dataframe.read_parquet``),
        a HATS catalogue folder (opened with ``lsdb.open_catalog``), or the
        object itself.
    out : str or path
        Output folder.  A Dask input gives ``part.NNNNN.parquet`` files (read
        back with ``pandas.read_parquet(out)`` or ``dask.dataframe.read_parquet``);
        an LSDB input gives a HATS catalogue (``lsdb.open_catalog(out)``),
        finished once every pixel is written.
    scheduler : str or distributed.Client, optional
        Address of a running Dask scheduler; default: a LocalCluster here.
    n_workers : int, optional
        Workers of the LocalCluster (one thread each); default: the CPU count.
    mc_num, dropout, seed, batch_size, feature_ranges
        See :func:`add_zeropoint`.
    columns : list of str, optional
        Columns to read from a path (the features are added when missing).
    retries : int
        Times Dask reruns a failed partition before the run reports it.
    overwrite : bool
        Replace an ``out`` that holds another run's output.
    max_partitions : int, optional
        Compute at most this many of the remaining partitions in this call
        (e.g. one slot of a batch queue); rerun to continue.
    progress : bool
        A tqdm bar over partitions.

    Returns
    -------
    dict
        ``out``, ``n_partitions``, ``computed`` (keys computed in this call),
        ``skipped`` (already written), ``failed``, ``complete``, ``rows``
        (written in total), ``rows_computed``, ``seconds``, ``rows_per_s``.

    Raises
    ------
    PartitionFailure
        Some partitions still failed after ``retries``; the rest are written.
    FileExistsError
        ``out`` holds something else (see ``overwrite``).
    """
    info = _model_info(model)
    if columns is not None:
        columns = list(columns) + [f for f in info["offset_features"] if f not in columns]
    frame = _open_catalog(catalog, columns=columns)
    result = add_zeropoint(frame, model, mc_num=mc_num, dropout=dropout, seed=seed, batch_size=batch_size,
                           feature_ranges=feature_ranges)
    config = {"model": info["folder"], "model_hash": info["hash"], "mc_num": int(mc_num) if dropout else 1,
              "dropout": bool(dropout), "seed": seed, "batch_size": int(batch_size),
              "feature_ranges": _check_ranges(info, feature_ranges),
              "input": os.path.abspath(os.fspath(catalog)) if isinstance(catalog, (str, os.PathLike))
              else f"<{type(catalog).__name__}>", "input_token": _input_token(frame), "columns": list(result.columns),
              "units": {"zeropoint": "mas", "zeropoint_error": "mas"},
              "convention": "parallax_gaia = parallax_true + zeropoint"}
    from dask import delayed

    if _is_lsdb(result):
        import hats

        pixels = list(result.get_healpix_pixels())
        keys = [_pixel_key(p) for p in pixels]
        files = [os.path.relpath(str(hats.io.paths.pixel_catalog_file("/", p)), "/") for p in pixels]
        config["pixels"] = [[int(p.order), int(p.pixel)] for p in pixels]
        by_key = dict(zip(keys, pixels))
        job = None

        def make_task(key, out_dir):
            pixel = by_key[key]
            part = result.get_partition(pixel.order, pixel.pixel).to_delayed()[0]
            return delayed(_write_zeropoint_part, pure=False)(part, out_dir, job.files[key], key, job.config_hash,
                                                              pixel=(int(pixel.order), int(pixel.pixel)))

        job = _Job("zeropoint", config, keys, files, make_task, finalize=_finalize_hats(frame))
    else:
        parts = result.to_delayed()
        keys = [_dask_key(i) for i in range(len(parts))]
        files = [f"{k}.parquet" for k in keys]
        config["n_partitions"] = len(parts)
        job = None

        def make_task(key, out_dir):
            i = keys.index(key)
            return delayed(_write_zeropoint_part, pure=False)(parts[i], out_dir, job.files[key], key, job.config_hash)

        job = _Job("zeropoint", config, keys, files, make_task)
    return _run(job, out, dict(scheduler=scheduler, n_workers=n_workers), retries, overwrite, max_partitions, progress)


# ============================================================ distances for partitioned spectra
def _spectra_files(sources):
    """Sorted partition files from a folder, a glob pattern or a list of paths."""
    if isinstance(sources, (str, os.PathLike)):
        path = os.fspath(sources)
        if os.path.isdir(path):
            files = [os.path.join(path, n) for n in sorted(os.listdir(path))
                     if n.lower().endswith(_SPECTRA_ENDINGS) and not n.startswith((".", "_"))]
        elif os.path.isfile(path):
            files = [path]
        else:
            files = sorted(glob.glob(path))
    else:
        files = [os.fspath(p) for p in sources]
    if not files:
        raise FileNotFoundError(f"no spectra partitions (*{', *'.join(_SPECTRA_ENDINGS)}) found in {sources!r}")
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"no such spectra partition: {f}")
        if not f.lower().endswith(_SPECTRA_ENDINGS):
            raise ValueError(f"spectra partitions must be HDF5 datasets, Parquet or FITS tables; got {f}")
    return [os.path.abspath(f) for f in files]


def _iter_dataset_chunks(path, chunk_rows):
    """Datasets of at most ``chunk_rows`` stars from one file; HDF5 spectra are read chunk by chunk."""
    from .io.dataset import Dataset, _is_hdf5, read_dataset

    if not _is_hdf5(path):
        ds = read_dataset(path)
        for start in range(0, len(ds), chunk_rows):
            yield ds.subset(np.arange(start, min(start + chunk_rows, len(ds))))
        return
    import h5py

    # the 1-D columns, units and attributes through the validating reader, without the spectra
    header = _read_hdf5_columns(path)
    with h5py.File(path, "r") as f:
        if "spectra" not in f:
            raise ValueError(f"{path} has no 'spectra'")
        spectra = f["spectra"]
        n = spectra.shape[0]
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            cols = {k: v[start:stop] for k, v in header["columns"].items()}
            yield Dataset(spectra=spectra[start:stop], columns=cols, units=header["units"], attrs=header["attrs"])


def _read_hdf5_columns(path):
    """The 1-D columns, their units and the attributes of an HDF5 dataset file, without its spectra."""
    import h5py

    from .io.dataset import _JSON_ATTR, _ORDER_ATTR, _RESERVED_ATTRS, FORMAT_NAME, SPECTRA_NAMES

    def text(v):
        return v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v

    with h5py.File(path, "r") as f:
        fmt = text(f.attrs.get("format"))
        if fmt is not None and fmt != FORMAT_NAME:
            raise ValueError(f"{path} is an HDF5 file of format {fmt!r}, not an {FORMAT_NAME}")
        attrs = {k: text(v) for k, v in f.attrs.items() if k not in _RESERVED_ATTRS}
        for key in f.attrs.get(_JSON_ATTR, []):
            attrs[text(key)] = json.loads(attrs[text(key)])
        order = [text(o) for o in f.attrs[_ORDER_ATTR]] if _ORDER_ATTR in f.attrs else \
            [k for k in f.keys() if k not in SPECTRA_NAMES]
        columns, units = {}, {}
        for name in order:
            node = f[name]
            if h5py.check_string_dtype(node.dtype) is not None:
                columns[name] = np.array(node.asstr()[()], dtype=str)
            else:
                columns[name] = node[()]
            if "unit" in node.attrs:
                units[name] = text(node.attrs["unit"])
    return {"columns": columns, "units": units, "attrs": attrs}


def _predict_part(path, out, rel, key, folder, mc_num, dropout, seed, batch_size, chunk_rows, config_hash):
    import pandas as pd

    from .pipeline import catalogue_for

    start = time.perf_counter()
    net = worker_model(folder)
    frames, units = [], {}
    with _inference_mode(net, dropout, seed, key, ("keras_model_predict", "offset_model")):
        for chunk in _iter_dataset_chunks(path, chunk_rows):
            if chunk["spectra"].shape[1] != net.spectrum_length:
                raise ValueError(f"{path} has {chunk['spectra'].shape[1]}-pixel spectra; the model expects "
                                 f"{net.spectrum_length}")
            table = catalogue_for(net, chunk, mc_num=mc_num if dropout else 1, batch_size=batch_size)
            units = {n: str(table[n].unit) for n in table.colnames if getattr(table[n], "unit", None) is not None}
            frames.append(table.to_pandas(index=False))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    record = {"key": key, "config_hash": config_hash, "rows": int(len(df)), "source": path}
    _write_parquet(df, os.path.join(out, rel), {**record, "units": units})
    return {**record, "file": rel, "units": units, "seconds": time.perf_counter() - start}


def predict_partitioned(model, sources, out, *, scheduler=None, n_workers=None, mc_num=100, dropout=True, seed=0,
                        batch_size=None, chunk_rows=10000, retries=2, overwrite=False, max_partitions=None,
                        progress=True):
    """Distances and parallaxes for spectra stored in many files, one Dask task per file.

    Parameters
    ----------
    model : str or path
        Model or ensemble folder.
    sources : str, path or list of paths
        A folder (its ``.h5``/``.hdf5``/``.parquet``/``.fits`` files, sorted
        by name), a glob pattern or a list of files; each is one partition in
        the dataset format (:mod:`astronn_gaiacal.io.dataset`) with ``spectra``
        and ``mag``.
    out : str or path
        Output folder: ``part.NNNNN.parquet`` per input file (in input order)
        with the paper's Table-1 columns (see ``astronn-gaiacal predict``;
        -9999 marks missing values, units in the manifest) and ``_manifest.json``.
    scheduler, n_workers, retries, overwrite, max_partitions, progress
        See :func:`zeropoint_catalog`.
    mc_num : int
        MC-dropout passes per star.
    dropout : bool
        ``False``: one deterministic pass with dropout off (no model uncertainty).
    seed : int or None
        See :func:`add_zeropoint`; a partition is seeded once, before its first chunk.
    batch_size : int, optional
        Stars per compiled inference call.
    chunk_rows : int
        Stars read from a file at a time: HDF5 spectra are read chunk by
        chunk, so a worker's memory is bounded by ``chunk_rows`` spectra;
        other formats are read whole and processed in chunks.

    Returns
    -------
    dict
        As :func:`zeropoint_catalog`.
    """
    info = _model_info(model)
    files = _spectra_files(sources)
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    keys = [_dask_key(i) for i in range(len(files))]
    stats = [os.stat(f) for f in files]
    config = {"model": info["folder"], "model_hash": info["hash"], "mc_num": int(mc_num) if dropout else 1,
              "dropout": bool(dropout), "seed": seed, "batch_size": batch_size, "chunk_rows": int(chunk_rows),
              "sources": [[f, s.st_size, s.st_mtime_ns] for f, s in zip(files, stats)]}
    if dropout and seed is not None:
        config["note"] = "MC draws depend on chunk_rows and batch_size"
    from dask import delayed

    job = None

    def make_task(key, out_dir):
        path = files[keys.index(key)]
        return delayed(_predict_part, pure=False)(path, out_dir, job.files[key], key, info["folder"], int(mc_num),
                                                  bool(dropout), seed, batch_size, int(chunk_rows), job.config_hash)

    job = _Job("predict", config, keys, [f"{k}.parquet" for k in keys], make_task)
    return _run(job, out, dict(scheduler=scheduler, n_workers=n_workers), retries, overwrite, max_partitions, progress)
