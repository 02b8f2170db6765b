"""Running a job's partitions on a Dask ``distributed`` cluster.

:func:`cluster_client` gives a client (a new LocalCluster, or a running
scheduler); :func:`run_job` computes the partitions not yet written, records
each in the output folder's manifest as it finishes, and reports the failed ones
(:class:`PartitionFailure`) after Dask's retries.
"""
import contextlib
import os
import time

from tqdm.auto import tqdm

from .output import exclusive_output, prepare_output, read_manifest, write_manifest

__all__ = ["PartitionFailure", "cluster_client", "run_job"]


class PartitionFailure(RuntimeError):
    """Some partitions failed after Dask's retries; the others are written and a rerun resumes.

    Attributes
    ----------
    failed : dict
        ``{partition key: error message}``.
    summary : dict
        The run summary (see :func:`~astronn_gaiacal.distributed.zeropoint_catalog`).
    """

    def __init__(self, message, failed, summary):
        super().__init__(message)
        self.failed = failed
        self.summary = summary


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


@contextlib.contextmanager
def _released(client, futures):
    """Forget the run's futures afterwards: an erred key kept alive would make a rerun fail at once."""
    try:
        yield
    finally:
        client.cancel(futures)
        futures.clear()


def _finished_before(out, job, command_key):
    """The previous run's ``finalized`` value (True when there is none) if ``out`` holds this job complete, else None."""
    try:
        old = read_manifest(out)
    except (FileNotFoundError, ValueError):
        return None
    if old.get("complete") and old.get("config_hash") == job.config_hash and not old.get("failed") \
            and (command_key is None or old.get("command_key") == command_key):
        return old.get("finalized", True)
    return None


def run_job(job, out, client_args, retries, overwrite, max_partitions, progress, command_key=None):
    """Compute the partitions of ``job`` not yet in ``out`` on a cluster, and keep the manifest up to date.

    Parameters
    ----------
    job : PartitionJob
    out : str or path
        Output folder.
    client_args : dict
        ``scheduler`` and ``n_workers`` of :func:`cluster_client`.
    retries, overwrite, max_partitions, progress, command_key
        See :func:`~astronn_gaiacal.distributed.zeropoint_catalog`.

    Returns
    -------
    dict
        The run summary (see :func:`~astronn_gaiacal.distributed.zeropoint_catalog`).

    Raises
    ------
    PartitionFailure
        Some partitions failed after ``retries``; the others are written.
    """
    out, manifest = prepare_output(out, job, overwrite)
    todo = [k for k in job.keys if k not in manifest["partitions"]]
    skipped = len(job.keys) - len(todo)
    if max_partitions is not None:
        if int(max_partitions) < 0:
            raise ValueError(f"max_partitions must be >= 0, got {max_partitions!r}")
        todo = todo[: int(max_partitions)]
    # a rerun of a finished run writes nothing at all (not even the manifest's time stamp)
    finished = not todo and _finished_before(out, job, command_key)
    if command_key is not None:
        manifest["command_key"] = command_key
    if finished:
        manifest["finalized"] = finished
        return _run_partitions(job, out, manifest, todo, skipped, finished, client_args, retries, progress)
    with exclusive_output(out):
        write_manifest(out, manifest)
        return _run_partitions(job, out, manifest, todo, skipped, finished, client_args, retries, progress)


def _run_partitions(job, out, manifest, todo, skipped, finished, client_args, retries, progress):
    from distributed import as_completed

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
                        write_manifest(out, manifest)
                        last = time.monotonic()
    seconds = time.perf_counter() - start
    complete = len(manifest["partitions"]) == len(job.keys)
    if complete and job.finalize is not None and not finished:
        manifest["finalized"] = job.finalize(out, manifest)
    manifest["complete"] = complete
    if failed:
        manifest["failed"] = failed
    else:
        manifest.pop("failed", None)
    if not finished:
        write_manifest(out, manifest)
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
