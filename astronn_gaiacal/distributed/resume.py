"""Resuming a finished run without loading anything heavy: tokens of files that every process computes alike.

:func:`files_token` identifies a file, folder or glob by every file's relative
path, size and modification time (never by object identity or a Dask graph
name, which differ between processes).  The command line records
:func:`command_key` (the model folder's and the input's tokens and the
options) in the manifest of a finished output folder; :func:`finished_run`
finds it again, so an identical rerun in a new process returns at once and
writes nothing.

Examples
--------
>>> import os, tempfile
>>> from astronn_gaiacal.distributed.resume import files_token
>>> d = tempfile.mkdtemp()
>>> with open(os.path.join(d, "a.parquet"), "wb") as f:
...     _ = f.write(b"1234")
>>> files_token(d) == files_token(d + "/")       # the same files, the same token
True
"""
import glob
import hashlib
import json
import os

__all__ = ["MANIFEST_NAME", "RUN_ONLY_OPTIONS", "command_key", "files_token", "finished_run"]

#: The manifest of an output folder (also :data:`astronn_gaiacal.distributed.output.MANIFEST_NAME`).
MANIFEST_NAME = "_manifest.json"
#: Command-line options that change how a run is carried out, not what it writes.
RUN_ONLY_OPTIONS = frozenset({"json", "overwrite", "scheduler", "workers", "retries", "max_partitions", "func",
                              "command", "verbose", "quiet"})


def files_token(path):
    """SHA-256 (16 hex digits) of the relative paths, sizes and modification times of the files of ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        A file, a folder (every file below it) or a glob pattern.

    Returns
    -------
    str
        ``'files:<count>:<digest>'``; a missing path gives ``'files:0:...'``.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        files = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
        base = path
    else:
        files = sorted(glob.glob(path)) or ([path] if os.path.exists(path) else [])
        base = os.path.dirname(path)
    digest = hashlib.sha256()
    for name in sorted(files):
        st = os.stat(name)
        digest.update(f"{os.path.relpath(name, base)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"files:{len(files)}:{digest.hexdigest()[:16]}"


def command_key(kind, model, data, options):
    """Key of one command: its kind, the model folder's and the input's :func:`files_token`, and its options.

    Parameters
    ----------
    kind : str
        ``'zeropoint'`` or ``'predict'``.
    model, data : str
        Model folder and input (file, folder or glob).
    options : dict
        The command's options; :data:`RUN_ONLY_OPTIONS` are left out.
    """
    config = {"kind": kind, "model": files_token(model), "data": files_token(data),
              "options": {k: v for k, v in sorted(options.items()) if k not in RUN_ONLY_OPTIONS}}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finished_run(out, key):
    """The manifest of ``out`` if it holds a complete run recorded under ``key``, else None.

    For a HATS output (no manifest: :mod:`~astronn_gaiacal.distributed.hats_output`) a manifest-like
    dict from its ``hats.properties`` (``n_partitions``, ``rows``) when LSDB finished it under ``key``.
    """
    path = os.path.join(os.fspath(out), MANIFEST_NAME)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        from .hats_output import finished_hats

        props = finished_hats(out, command_key=key)
        if props is None:
            return None
        try:
            with open(os.path.join(os.fspath(out), "partition_info.csv")) as f:
                n = sum(1 for line in f if line.strip()) - 1  # a header line, then one line per pixel
        except OSError:
            return None
        return {"complete": True, "n_partitions": n, "rows": int(props.get("hats_nrows", 0))}
    if not (manifest.get("complete") and not manifest.get("failed") and manifest.get("command_key") == key):
        return None
    parts = manifest.get("partitions", {})
    if len(parts) != manifest.get("n_partitions") or not all(
            os.path.isfile(os.path.join(os.fspath(out), p.get("file", ""))) for p in parts.values()):
        return None  # a partition file went missing: the full check redoes it
    return manifest
