"""HATS output through LSDB's own writer (``Catalog.write_catalog``), resumable, with the run's configuration.

An LSDB input gives a HATS catalogue written by :meth:`lsdb.Catalog.write_catalog`: the pixel files, the
Parquet metadata, ``partition_info.csv``, the per-partition statistics and the skymap that LSDB readers
expect, and ``hats.properties`` with the run's configuration hash and command key
(``astronn_gaiacal_config_hash``, ``astronn_gaiacal_command_key``).  LSDB marks each pixel written
(its ``done/`` folder) and resumes a write after an interruption (``resume=True``), rewriting the pixels
not marked.  While a write is under way, :data:`RUN_FILE` holds the configuration, so that a rerun with
other options is refused instead of mixing two runs' pixels; it is removed once the catalogue is finished.
"""
import json
import os
import shutil
import time

from .output import _config_hash, exclusive_output

__all__ = ["RUN_FILE", "finished_hats", "write_hats"]

#: The configuration of a HATS write under way (removed when it finishes).
RUN_FILE = "astronn_gaiacal_run.json"
_HASH_KEY, _COMMAND_KEY = "astronn_gaiacal_config_hash", "astronn_gaiacal_command_key"


def _properties(out):
    """``hats.properties`` of ``out`` as a dict of strings, read by HATS (empty when there is none)."""
    if not os.path.isfile(os.path.join(out, "hats.properties")):
        return {}
    from hats.catalog import TableProperties

    props = TableProperties.read_from_dir(out)
    return {**props.extra_dict(), "hats_nrows": str(props.total_rows)}


def finished_hats(out, command_key=None, config_hash=None):
    """``hats.properties`` of ``out`` if it holds a finished HATS catalogue of this run, else None.

    Parameters
    ----------
    out : str or path
    command_key, config_hash : str, optional
        Those recorded must equal these (when given).
    """
    out = os.fspath(out)
    if os.path.exists(os.path.join(out, RUN_FILE)) or os.path.isdir(os.path.join(out, "done")):
        return None  # a write under way or interrupted
    props = _properties(out)
    if not props.get(_HASH_KEY):
        return None
    if command_key is not None and props.get(_COMMAND_KEY) != command_key:
        return None
    if config_hash is not None and props.get(_HASH_KEY) != config_hash:
        return None
    return props


def _summary(out, n, computed, skipped, rows, rows_now, seconds):
    return {"out": out, "kind": "zeropoint", "n_partitions": n, "computed": computed, "skipped": skipped,
            "failed": [], "complete": True, "rows": rows, "rows_computed": rows_now, "seconds": seconds,
            "rows_per_s": rows_now / seconds if rows_now and seconds > 0 else float("nan")}


def _refuse(out, theirs, ours):
    raise FileExistsError(
        f"{out} holds the output of another run (different model, input or options; config hash {theirs} != "
        f"{ours}); rerun with --overwrite (overwrite=True in Python) to replace it, or choose another output folder")


def write_hats(catalog, out, config, name, *, client_args, retries, overwrite, max_partitions, progress,
               command_key=None):
    """Write the lazy LSDB ``catalog`` to ``out`` with ``catalog.write_catalog``, resuming a previous write.

    Parameters
    ----------
    catalog : lsdb.Catalog
        The catalogue with the zero-point columns (nothing computed yet).
    out : str or path
    config : dict
        The run's configuration; its hash identifies the run.
    name : str
        ``catalog_name`` of the output.
    client_args : dict
        ``scheduler`` and ``n_workers`` of :func:`~astronn_gaiacal.distributed.cluster.cluster_client`.
    retries : int
        Times Dask reruns a failed pixel task.
    overwrite : bool
        Replace an ``out`` that holds something else.
    max_partitions : None
        Not supported (LSDB writes a catalogue in one go; an interrupted write resumes).
    progress : bool
    command_key : str, optional
        Recorded in ``hats.properties``.

    Returns
    -------
    dict
        The summary :func:`~astronn_gaiacal.distributed.zeropoint_catalog` returns; ``computed`` are the
        keys of the pixels written by this call, ``skipped`` the number a previous write had finished.

    Raises
    ------
    PartitionFailure
        ``write_catalog`` failed after ``retries``; the pixels LSDB marked done are kept for the next run.
    FileExistsError
        ``out`` holds something else and ``overwrite`` is False.
    """
    import dask
    import hats
    from hats.pixel_math import HealpixPixel

    from .cluster import PartitionFailure, cluster_client

    if max_partitions is not None:
        raise ValueError("max_partitions applies to Parquet/Dask input; a HATS catalogue is written by LSDB in one "
                         "go (rerun an interrupted write to resume it)")
    out = os.path.abspath(os.fspath(out))
    config_hash = _config_hash(config)
    n = len(config["pixels"])
    done = finished_hats(out)
    if done is not None:
        if done.get(_HASH_KEY) == config_hash:
            return _summary(out, n, [], n, int(done.get("hats_nrows", 0)), 0, 0.0)  # writes nothing
        if not overwrite:
            _refuse(out, done.get(_HASH_KEY), config_hash)
        shutil.rmtree(out)
    elif os.path.isdir(out) and os.listdir(out):
        run_file = os.path.join(out, RUN_FILE)
        theirs = None
        if os.path.isfile(run_file):
            with open(run_file) as f:
                theirs = json.load(f).get("config_hash")
        if theirs != config_hash:
            if not overwrite:
                if theirs is None:
                    raise FileExistsError(f"{out} exists and is not an astronn_gaiacal output folder; choose an "
                                          "empty or new folder")
                _refuse(out, theirs, config_hash)
            shutil.rmtree(out)
    elif os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"{out} exists and is not a folder")
    os.makedirs(out, exist_ok=True)
    with exclusive_output(out):
        with open(os.path.join(out, RUN_FILE), "w") as f:
            json.dump({"config_hash": config_hash, "config": config, "command_key": command_key}, f, default=str)
        done_dir = os.path.join(out, "done")
        before = set(os.listdir(done_dir)) if os.path.isdir(done_dir) else set()
        start = time.perf_counter()
        props = {_HASH_KEY: config_hash, _COMMAND_KEY: command_key or ""}
        with cluster_client(**client_args), dask.annotate(retries=int(retries)):
            try:
                catalog.write_catalog(out, catalog_name=name, as_collection=False, resume=True,
                                      addl_hats_properties=props, progress_bar=progress)
            except Exception as err:  # the pixels marked done are kept; a rerun resumes
                written = len(os.listdir(done_dir)) if os.path.isdir(done_dir) else 0
                summary = {**_summary(out, n, [], len(before), 0, 0, time.perf_counter() - start),
                           "complete": False, "failed": ["write_catalog"]}
                raise PartitionFailure(f"writing the HATS catalogue failed after {retries} retries "
                                       f"({type(err).__name__}: {err}); {written} of {n} pixels are written to "
                                       f"{out}; rerun to resume", {"write_catalog": str(err)}, summary) from err
        seconds = time.perf_counter() - start
        os.unlink(os.path.join(out, RUN_FILE))
    import pyarrow.parquet as pq

    from .output import pixel_key

    total = int(_properties(out).get("hats_nrows", 0))
    # LSDB's done file of pixel (order, pixel) is 'ORDER_PIXEL_done'
    new = [(o, p) for o, p in config["pixels"] if f"{o}_{p}_done" not in before]
    computed = [pixel_key(HealpixPixel(o, p)) for o, p in new]
    rows_now = total if not before else int(sum(
        pq.ParquetFile(str(hats.io.paths.pixel_catalog_file(out, HealpixPixel(o, p)))).metadata.num_rows
        for o, p in new))
    return _summary(out, n, computed, n - len(computed), total, rows_now, seconds)
