"""Resumable output folders: one Parquet file per partition, written atomically, and a manifest.

Every partition file carries the run's configuration hash in its Parquet
metadata; :data:`MANIFEST_NAME` lists the partitions written and says
``"complete": true`` only once every partition is there.  A rerun with the
same configuration keeps the partitions already written (also those a killed
run wrote after its last manifest update).
"""
import contextlib
import hashlib
import json
import os
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq

from .._versions import __version__
from ..io.atomic import atomic_path

__all__ = [
    "MANIFEST_NAME",
    "IncompleteOutputError",
    "PartitionJob",
    "partition_key",
    "pixel_key",
    "prepare_output",
    "read_manifest",
    "write_manifest",
    "write_parquet",
]

#: Name of the manifest in an output folder (a leading '_' keeps Parquet readers off it).
MANIFEST_NAME = "_manifest.json"
#: Key of the partition metadata in each Parquet file's schema metadata.
_PARQUET_KEY = b"astronn_gaiacal"
_FORMAT = "astronn_gaiacal partitioned output"


class IncompleteOutputError(RuntimeError):
    """An output folder whose manifest does not (yet) say ``complete``."""


def partition_key(number):
    """Key of Dask DataFrame partition (or spectra file) ``number``: ``'part.00012'``."""
    return f"part.{int(number):05d}"


def pixel_key(pixel):
    """Key of a HATS pixel (``hats.pixel_math.HealpixPixel``): ``'Norder=3/Dir=0/Npix=191'``."""
    return f"Norder={pixel.order}/Dir={pixel.dir}/Npix={pixel.pixel}"


def _config_hash(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(out, require_complete=False):
    """The manifest of an output folder written by :func:`~astronn_gaiacal.distributed.zeropoint_catalog` or
    :func:`~astronn_gaiacal.distributed.predict_partitioned`.

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


def write_manifest(out, manifest):
    """Write ``manifest`` (a dict, see :func:`read_manifest`) into ``out`` atomically, stamped ``updated``."""
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with atomic_path(os.path.join(out, MANIFEST_NAME), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)


def _parquet_record(path):
    """The astronn_gaiacal metadata a partition file was written with, or None."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    raw = meta.get(_PARQUET_KEY)
    return json.loads(raw) if raw else None


def write_parquet(df, path, record):
    """Write one partition atomically, with ``record`` in the file's schema metadata.

    Parameters
    ----------
    df : pandas.DataFrame
    path : str
    record : dict
        JSON-serialisable; at least ``key`` (the partition key) and
        ``config_hash`` (the hash of the run's settings), which a rerun checks.
    """
    table = df.to_pyarrow() if hasattr(df, "to_pyarrow") else pa.Table.from_pandas(df, preserve_index=True)
    meta = dict(table.schema.metadata or {})
    meta[_PARQUET_KEY] = json.dumps(record).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path, overwrite=True) as tmp:
        pq.write_table(table, tmp)


class PartitionJob:
    """Partitions of one run: keys, relative file names, and a function building each task.

    Parameters
    ----------
    kind : str
        ``'zeropoint'`` or ``'predict'``.
    config : dict
        The run's configuration (JSON-serialisable); its hash identifies the run.
    keys : list of str
        Partition keys (:func:`partition_key`, :func:`pixel_key`).
    files : list of str
        Each partition's file, relative to the output folder.
    make_task : callable
        ``make_task(key, out) -> dask.delayed`` returning the partition's record.
    finalize : callable, optional
        ``finalize(out, manifest)``, run once every partition is written; its result goes in the manifest.
    """

    def __init__(self, kind, config, keys, files, make_task, finalize=None):
        self.kind = kind
        self.config = config
        self.config_hash = _config_hash(config)
        self.keys = list(keys)
        self.files = dict(zip(self.keys, files))
        self.make_task = make_task
        self.finalize = finalize


#: Lock file of an output folder, held (``fcntl.flock``) by the run writing to it.
LOCK_NAME = ".astronn_gaiacal.lock"


@contextlib.contextmanager
def exclusive_output(out):
    """Hold the lock of output folder ``out`` and remove the temporary files a killed run left in it.

    While one process holds the lock no other run is writing there, so every
    ``.*.partial*`` file (:func:`~astronn_gaiacal.io.atomic.atomic_path`'s
    temporary names) is debris and is deleted.  The operating system releases
    the lock when a process dies, however it dies.

    Raises
    ------
    FileExistsError
        Another run holds the lock.
    """
    import fcntl

    with open(os.path.join(out, LOCK_NAME), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(f"another run is writing to {out} right now; wait for it to finish") from None
        for root, dirs, files in os.walk(out):
            for name in files + dirs:
                if name.startswith(".") and ".partial" in name:
                    path = os.path.join(root, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        try:
            yield out
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_output(out, job, overwrite):
    """Make ``out`` ready for ``job``; return it (absolute) and the manifest of the partitions already written.

    Raises
    ------
    FileExistsError
        ``out`` holds something else, or another run's output and ``overwrite`` is False.
    """
    out = os.path.abspath(os.fspath(out))
    fresh = {"format": _FORMAT, "version": __version__, "kind": job.kind, "config": job.config,
             "config_hash": job.config_hash, "n_partitions": len(job.keys), "partitions": {},
             "complete": False, "rows": 0}
    if os.path.isdir(out) and set(os.listdir(out)) - {LOCK_NAME}:
        path = os.path.join(out, MANIFEST_NAME)
        if not os.path.isfile(path):
            raise FileExistsError(f"{out} exists and is not an astronn_gaiacal output folder (no {MANIFEST_NAME}); "
                                  f"choose an empty or new folder")
        old = read_manifest(out)
        if old.get("config_hash") != job.config_hash:
            if not overwrite:
                raise FileExistsError(
                    f"{out} holds the output of another run (different model, input or options; config hash "
                    f"{old.get('config_hash')} != {job.config_hash}); rerun with --overwrite (overwrite=True in Python) "
                    "to replace it, or choose another output folder"
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
