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

Modules: :mod:`~astronn_gaiacal.distributed.zeropoint` (zero-point
catalogues), :mod:`~astronn_gaiacal.distributed.predict` (distances),
:mod:`~astronn_gaiacal.distributed.workers` (model folders and models on the
workers), :mod:`~astronn_gaiacal.distributed.output` (resumable output folders)
and :mod:`~astronn_gaiacal.distributed.cluster` (clients and running a job).

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
>>> from astronn_gaiacal import distributed                     # doctest: +SKIP
>>> stars = dd.read_parquet("gaia_dr3_subset/")                 # doctest: +SKIP
>>> summary = distributed.zeropoint_catalog(model_folder, stars, "zp_out/", mc_num=50)  # doctest: +SKIP
>>> summary["complete"], summary["rows"]                        # doctest: +SKIP
(True, 1000000)
>>> distributed.read_manifest("zp_out/")["complete"]            # doctest: +SKIP
True
"""
import importlib

#: Public name -> the submodule defining it, imported on first use (so that the light submodules, e.g.
#: :mod:`~astronn_gaiacal.distributed.resume`, load without TensorFlow).
_LAZY = {
    "PartitionFailure": "cluster", "cluster_client": "cluster",
    "MANIFEST_NAME": "output", "IncompleteOutputError": "output", "read_manifest": "output",
    "predict_partitioned": "predict",
    "partition_seed": "workers", "worker_model": "workers",
    "ZEROPOINT_COLUMNS": "zeropoint", "add_zeropoint": "zeropoint", "zeropoint_catalog": "zeropoint",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    if name in ("cluster", "output", "predict", "resume", "workers", "zeropoint"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


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
