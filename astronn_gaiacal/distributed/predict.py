"""Distances and parallaxes for spectra stored in many files: one Dask task per file."""
import glob
import os
import time

from ..constants import HDF5_EXTENSIONS
from ..io.dataset import read_dataset_chunks
from ..pipeline import catalogue_for
from .cluster import run_job
from .output import PartitionJob, partition_key, write_parquet
from .workers import inference_mode, model_info, worker_model

__all__ = ["predict_partitioned"]

#: File endings of spectra partitions: HDF5 datasets, Parquet or FITS tables.
_SPECTRA_ENDINGS = HDF5_EXTENSIONS + (".parquet", ".pq", ".fits", ".fit")


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


def _predict_part(path, out, rel, key, folder, mc_num, dropout, seed, batch_size, chunk_rows, config_hash):
    import pandas as pd

    start = time.perf_counter()
    net = worker_model(folder)
    frames, units = [], {}
    with inference_mode(net, dropout, seed, key, ("keras_model_predict", "offset_model")):
        for chunk in read_dataset_chunks(path, chunk_rows):
            if chunk["spectra"].shape[1] != net.spectrum_length:
                raise ValueError(f"{path} has {chunk['spectra'].shape[1]}-pixel spectra; the model expects "
                                 f"{net.spectrum_length}")
            table = catalogue_for(net, chunk, mc_num=mc_num if dropout else 1, batch_size=batch_size)
            units = {n: str(table[n].unit) for n in table.colnames if getattr(table[n], "unit", None) is not None}
            frames.append(table.to_pandas(index=False))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    record = {"key": key, "config_hash": config_hash, "rows": int(len(df)), "source": path}
    write_parquet(df, os.path.join(out, rel), {**record, "units": units})
    return {**record, "file": rel, "units": units, "seconds": time.perf_counter() - start}


def predict_partitioned(model, sources, out, *, scheduler=None, n_workers=None, mc_num=100, dropout=True, seed=0,
                        batch_size=None, chunk_rows=10000, retries=2, overwrite=False, max_partitions=None,
                        progress=True, command_key=None):
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
    scheduler, n_workers, retries, overwrite, max_partitions, progress, command_key
        See :func:`~astronn_gaiacal.distributed.zeropoint.zeropoint_catalog`.
    mc_num : int
        MC-dropout passes per star.
    dropout : bool
        ``False``: one deterministic pass with dropout off (no model uncertainty).
    seed : int or None
        See :func:`~astronn_gaiacal.distributed.zeropoint.add_zeropoint`; a partition is seeded once, before its first chunk.
    batch_size : int, optional
        Stars per compiled inference call.
    chunk_rows : int
        Stars read from a file at a time: HDF5 spectra are read chunk by
        chunk, so a worker's memory is bounded by ``chunk_rows`` spectra;
        other formats are read whole and processed in chunks.

    Returns
    -------
    dict
        As :func:`~astronn_gaiacal.distributed.zeropoint.zeropoint_catalog`.
    """
    info = model_info(model)
    files = _spectra_files(sources)
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    keys = [partition_key(i) for i in range(len(files))]
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

    job = PartitionJob("predict", config, keys, [f"{k}.parquet" for k in keys], make_task)
    client_args = dict(scheduler=scheduler, n_workers=n_workers)
    return run_job(job, out, client_args, retries, overwrite, max_partitions, progress, command_key)
