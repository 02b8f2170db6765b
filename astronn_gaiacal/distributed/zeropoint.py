"""Zero-points of whole catalogues: the model's zero-point on every partition of a Dask DataFrame or LSDB catalogue.

:func:`add_zeropoint` is lazy (``map_partitions``); :func:`zeropoint_catalog`
computes it on a cluster and writes one Parquet file per partition (a HATS
catalogue, by LSDB's own writer, for an LSDB input).  By default every
partition gets the calibrated zero-point or trend stored in the model folder,
evaluated from its JSON alone (the workers never import TensorFlow); the
offset network runs, with MC dropout, only for ``estimate='learned'`` or a
folder without a calibration.
"""
import glob
import hashlib
import os
import time

import numpy as np

from ..constants import COLUMN_UNITS, ZEROPOINT_CONVENTION
from ..io.columns import MissingColumnError
from .cluster import run_job
from .hats_output import write_hats
from .output import PartitionJob, partition_key, pixel_key, write_parquet
from .resume import files_token
from .workers import inference_mode, model_info, resolve_feature_ranges, worker_model

__all__ = ["LEARNED", "ZEROPOINT_COLUMNS", "add_zeropoint", "zeropoint_catalog"]

#: ``estimate`` that runs the offset network the model learned instead of its calibrated zero-point.
LEARNED = "learned"

#: Columns added by :func:`add_zeropoint`.
ZEROPOINT_COLUMNS = ("zeropoint", "zeropoint_error", "zeropoint_out_of_range")


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


def _calibrated_zeropoints(df, calibration, ranges):
    """Zero-points, errors [mas] and range flags of a partition from a stored calibration (no TensorFlow)."""
    from ..zeropoint.calibrated import CalibratedZeropoint

    cal = CalibratedZeropoint.from_dict(calibration)
    if not cal.is_trend:
        zp_q, err_q = cal.per_star(None, len(df))
        return zp_q, err_q, np.zeros(len(df), bool)
    feats = {name: _float_column(df, name) for name in cal.features}
    zp_q, err_q = cal.per_star(feats, len(df))
    flag = _out_of_range(feats, {name: r for name, r in ranges.items() if name in feats})
    return zp_q, err_q, np.zeros(len(df), bool) if flag is None else flag


def _zeropoint_frame(df, folder, ranges, mc_num, dropout, seed, key, batch_size, calibration=None):
    """One partition with the three zero-point columns appended (row count and order kept)."""
    n = len(df)
    out = df.copy()
    if calibration is not None:
        zp_q, err_q, flag = _calibrated_zeropoints(df, calibration, ranges or {})
        return _with_columns(out, df, zp_q, err_q, flag)
    from ..pipeline import table_zeropoints

    net = worker_model(folder)
    mc = int(mc_num) if dropout else 1
    if net.offset == "constant":
        with inference_mode(net, dropout, seed, key, ("offset_model",)):
            zp_q, err_q = table_zeropoints(net, df, mc_num=mc, estimate=LEARNED)
        flag = np.zeros(n, bool)
    else:
        feats = {name: _float_column(df, name) for name in net.offset_features}
        with inference_mode(net, dropout, seed, key, ("offset_model",)):
            zp_q, err_q = table_zeropoints(net, feats, mc_num=mc, batch_size=batch_size, estimate=LEARNED)
        flag = _out_of_range(feats, ranges)
    return _with_columns(out, df, zp_q, err_q, flag)


def _with_columns(out, df, zp_q, err_q, flag):
    import pandas as pd

    zp, zp_err = zp_q.to_value("mas"), err_q.to_value("mas")
    out["zeropoint"] = pd.Series(np.asarray(zp, np.float64), index=df.index)
    out["zeropoint_error"] = pd.Series(np.asarray(zp_err, np.float64), index=df.index)
    out["zeropoint_out_of_range"] = pd.Series(np.asarray(flag, bool), index=df.index)
    return out


def _zeropoint_dask_partition(df, folder, ranges, mc_num, dropout, seed, batch_size, calibration,
                              partition_info=None):
    number = (partition_info or {}).get("number", 0)
    return _zeropoint_frame(df, folder, ranges, mc_num, dropout, seed, partition_key(number), batch_size, calibration)


def _zeropoint_pixel_partition(df, pixel, folder, ranges, mc_num, dropout, seed, batch_size, calibration):
    return _zeropoint_frame(df, folder, ranges, mc_num, dropout, seed, pixel_key(pixel), batch_size, calibration)


def _is_lsdb(obj):
    return type(obj).__module__.startswith("lsdb.")


def _zeropoint_meta(meta):
    import pandas as pd

    meta = meta.iloc[:0].copy()
    meta["zeropoint"] = pd.Series(dtype=np.float64)
    meta["zeropoint_error"] = pd.Series(dtype=np.float64)
    meta["zeropoint_out_of_range"] = pd.Series(dtype=bool)
    return meta


def add_zeropoint(frame, model, mc_num=100, dropout=True, seed=0, batch_size=65536, feature_ranges=None,
                  estimate=None):
    """Lazily add the model's zero-point to every partition of a Dask DataFrame or LSDB catalogue.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame or lsdb.Catalog
        Stars with the model's offset-feature columns (e.g. ``phot_g_mean_mag``,
        ``bp_rp``, ``teff``).  Nothing is computed here.
    model : str or path
        Model or ensemble folder.  Its calibrated zero-point is read from the
        folder's JSON; the network is loaded, once in each worker
        (:func:`~astronn_gaiacal.distributed.workers.worker_model`), only to run the learned offset.
    mc_num : int
        MC-dropout passes per star (with ``dropout=True``) of the learned offset.
    dropout : bool
        ``False`` runs the offset network once with dropout off:
        deterministic, ``zeropoint_error`` NaN (unknown without the passes; the learned offset only).
    seed : int or None
        Partition ``key`` is computed after
        ``keras.utils.set_random_seed(partition_seed(seed, key))``; ``None``
        leaves the random state alone (not reproducible).
    batch_size : int
        Stars per compiled inference call.
    feature_ranges : dict, optional
        ``{feature: (low, high)}``; defaults to the training ranges stored in
        the model folder.
    estimate : {None, 'learned'}
        ``None`` (default): the calibrated zero-point or trend the folder stores
        (:class:`~astronn_gaiacal.zeropoint.calibrated.CalibratedZeropoint`,
        its per-star error from the fit's covariance), as ``zeropoint MODEL TABLE``
        gives; for a folder without one, the learned offset with a
        ``ZeropointCalibrationWarning``.  ``'learned'``: the offset network.

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
    info = model_info(model)
    if info["offset"] == "none":
        raise ValueError(f"model {info['folder']} was trained with offset='none': it has no zero-point model")
    ranges = resolve_feature_ranges(info, feature_ranges)
    if int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    columns = list(frame.columns)
    missing = [n for n in info["offset_features"] if n not in columns]
    if info["offset"] == "multivariate" and missing:
        raise MissingColumnError(f"the catalogue lacks offset feature column(s) {missing}; the model needs "
                                 f"{info['offset_features']}")
    clash = [c for c in ZEROPOINT_COLUMNS if c in columns]
    if clash:
        raise ValueError(f"frame already has column(s) {clash}; drop or rename them first")
    args = (info["folder"], ranges, int(mc_num), bool(dropout), seed, int(batch_size),
            _calibration(info, estimate, warn=True))
    if _is_lsdb(frame):
        meta = _zeropoint_meta(frame.meta)
        return frame.map_partitions(_zeropoint_pixel_partition, *args, meta=meta, include_pixel=True)
    import dask.dataframe as dd

    if not isinstance(frame, dd.DataFrame):
        raise TypeError(f"frame must be a dask DataFrame or an lsdb Catalog, got {type(frame).__name__}")
    return frame.map_partitions(_zeropoint_dask_partition, *args, meta=_zeropoint_meta(frame._meta))


def _calibration(info, estimate, warn=False):
    """The stored calibration the partitions use (None: run the learned offset network)."""
    if estimate not in (None, LEARNED):
        raise ValueError(f"estimate must be None or {LEARNED!r}, got {estimate!r}")
    calibration = None if estimate == LEARNED else info["zeropoint_calibration"]
    if estimate is None and calibration is None and warn:
        import warnings

        from ..models.protocol import ZeropointCalibrationWarning

        warnings.warn(f"{info['folder']} has no calibrated zero-point: per-star zero-points are the learned offset's",
                      ZeropointCalibrationWarning, stacklevel=3)
    return calibration


def _write_zeropoint_part(df, out, rel, key, config_hash):
    start = time.perf_counter()
    record = {"key": key, "config_hash": config_hash, "rows": int(len(df)),
              "n_out_of_range": int(np.asarray(df["zeropoint_out_of_range"]).sum()),
              "n_missing": int(np.isnan(np.asarray(df["zeropoint"], dtype=float)).sum())}
    write_parquet(df, os.path.join(out, rel), record)
    return {**record, "file": rel, "seconds": time.perf_counter() - start}


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


def input_token(catalog, frame=None):
    """A token of the input's data that is the same in every process and on every machine.

    For a path (Parquet file, folder or glob, or a HATS catalogue folder): a
    SHA-256 of every file's path relative to the input, size and modification
    time, so a rerun of the same command on unchanged files gets the same
    token, and a changed, added or removed file a new one.  For an object: the
    HATS catalogue's name, row count and pixels (LSDB), or
    ``dask.base.tokenize`` of the Dask DataFrame (stable within a process only:
    pass a path to resume in another one).
    """
    if isinstance(catalog, (str, os.PathLike)):
        return files_token(catalog)
    frame = catalog if frame is None else frame
    if _is_lsdb(frame):
        info = frame.hc_structure.catalog_info
        pixels = sorted((int(p.order), int(p.pixel)) for p in frame.get_healpix_pixels())
        return f"hats:{info.catalog_name}:{info.total_rows}:" + hashlib.sha256(str(pixels).encode()).hexdigest()[:16]
    from dask.base import tokenize

    return f"dask:{tokenize(frame)}"


def zeropoint_catalog(model, catalog, out, *, scheduler=None, n_workers=None, mc_num=100, dropout=True, seed=0,
                      batch_size=65536, feature_ranges=None, columns=None, retries=2, overwrite=False,
                      max_partitions=None, progress=True, command_key=None, estimate=None):
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
        an LSDB input gives a HATS catalogue (``lsdb.open_catalog(out)``)
        written by LSDB's own ``Catalog.write_catalog`` (pixel files, Parquet
        metadata, per-partition statistics, skymap;
        :mod:`~astronn_gaiacal.distributed.hats_output`), finished once every
        pixel is written.  The manifest (:func:`~astronn_gaiacal.distributed.output.read_manifest`) is kept for a
        Dask input only; a HATS output records the run in ``hats.properties``.
    scheduler : str or distributed.Client, optional
        Address of a running Dask scheduler; default: a LocalCluster here.
    n_workers : int, optional
        Workers of the LocalCluster (one thread each); default: the CPU count.
    mc_num, dropout, seed, batch_size, feature_ranges, estimate
        See :func:`add_zeropoint`.
    columns : list of str, optional
        Columns to read from a path (the features are added when missing).
    retries : int
        Times Dask reruns a failed partition before the run reports it.
    overwrite : bool
        Replace an ``out`` that holds another run's output.
    max_partitions : int, optional
        Compute at most this many of the remaining partitions in this call
        (e.g. one slot of a batch queue); rerun to continue.  Dask input only
        (LSDB writes a HATS catalogue in one go; an interrupted write resumes).
    progress : bool
        A tqdm bar over partitions.
    command_key : str, optional
        Recorded in the manifest (``hats.properties`` for a HATS output;
        :func:`~astronn_gaiacal.distributed.resume.command_key`): the command line's
        quick check that an identical rerun has nothing to do.

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
    info = model_info(model)
    if columns is not None:
        columns = list(columns) + [f for f in info["offset_features"] if f not in columns]
    frame = _open_catalog(catalog, columns=columns)
    result = add_zeropoint(frame, model, mc_num=mc_num, dropout=dropout, seed=seed, batch_size=batch_size,
                           feature_ranges=feature_ranges, estimate=estimate)
    calibration = _calibration(info, estimate)
    config = {"model": info["folder"], "model_hash": info["hash"], "mc_num": int(mc_num) if dropout else 1,
              "estimate": LEARNED if calibration is None else calibration["estimate"],
              "dropout": bool(dropout), "seed": seed, "batch_size": int(batch_size),
              "feature_ranges": resolve_feature_ranges(info, feature_ranges),
              "input": os.path.abspath(os.fspath(catalog)) if isinstance(catalog, (str, os.PathLike))
              else f"<{type(catalog).__name__}>", "input_token": input_token(catalog, frame), "columns": list(result.columns),
              "units": {name: COLUMN_UNITS[name] for name in ("zeropoint", "zeropoint_error")},
              "convention": ZEROPOINT_CONVENTION}
    from dask import delayed

    client_args = dict(scheduler=scheduler, n_workers=n_workers)
    if _is_lsdb(result):  # a HATS catalogue, written by LSDB's own writer (resumable)
        config["pixels"] = [[int(p.order), int(p.pixel)] for p in result.get_healpix_pixels()]
        name = f"{frame.hc_structure.catalog_info.catalog_name}_zeropoint"
        return write_hats(result, out, config, name, client_args=client_args, retries=retries, overwrite=overwrite,
                          max_partitions=max_partitions, progress=progress, command_key=command_key)
    parts = result.to_delayed()
    keys = [partition_key(i) for i in range(len(parts))]
    files = [f"{k}.parquet" for k in keys]
    config["n_partitions"] = len(parts)
    job = None

    def make_task(key, out_dir):
        i = keys.index(key)
        return delayed(_write_zeropoint_part, pure=False)(parts[i], out_dir, job.files[key], key, job.config_hash)

    job = PartitionJob("zeropoint", config, keys, files, make_task)
    return run_job(job, out, client_args, retries, overwrite, max_partitions, progress, command_key)
