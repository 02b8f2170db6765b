"""Train independent models side by side in worker processes.

One training of the joint model uses its cores poorly: its operations are
small and mostly sequential.  Deep-ensemble members and the demo's offset
variants are independent, so this module runs several trainings at once, one
per worker process, each with its share of the cores (docs/performance.rst
has the measured gain).

Each job is a picklable factory (it returns an untrained model), a seed and the
``fit`` arguments.  The parent writes every distinct array once to a
temporary folder; workers memory-map it, seed Keras, build, fit and save an
astroNN model folder, which the parent loads back.  A member trained here
equals, up to floating-point summation order, one trained in-process with the
same seed.

Workers are started with ``spawn`` (TensorFlow is not fork-safe), so a script
that calls this must guard its entry point with ``if __name__ == "__main__":``.
A worker ends itself within a second of its parent's death (a killed or
out-of-memory parent leaves no training running).
"""
import contextlib
import hashlib
import os
import pickle
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
from astropy import units as u
from tqdm.auto import tqdm

from .._compat import keras, tf
from ..io.atomic import owned_tempdir
from ..nn.fused import available_cores
from .folders import load_model_folder

__all__ = ["TrainJob", "available_cores", "default_jobs", "train_jobs"]


@dataclass
class TrainJob:
    """One model to train.

    Attributes
    ----------
    factory : callable
        Picklable (a module-level function or :func:`functools.partial` of one),
        returning a fresh untrained model.
    seed : int
        Passed to ``keras.utils.set_random_seed`` before ``factory()``.
    fit_kwargs : dict
        Keyword arguments of the model's ``fit``.
    name : str
        Label for progress and errors.
    luminosity_from_job : int, optional
        Index of an earlier job in the same :func:`train_jobs` call whose
        trained luminosity network this one starts from (``fit(luminosity_from=...)``,
        the second stage of a two-stage calibration); the job starts when that
        one has finished.
    """

    factory: object
    seed: int
    fit_kwargs: dict = field(default_factory=dict)
    name: str = "model"
    luminosity_from_job: int = None


def default_jobs(n_models):
    """Worker processes for ``n_models`` trainings: one per core, at most one per model."""
    return max(1, min(int(n_models), available_cores()))


def _share_arrays(jobs, folder):
    """Write each distinct array of the jobs' fit arguments once (by content); replace it by its path."""
    saved, shared = {}, []
    for job in jobs:
        kwargs = {}
        for key, value in job.fit_kwargs.items():
            if isinstance(value, np.ndarray) or hasattr(value, "unit"):
                arr = np.ascontiguousarray(getattr(value, "value", value))
                unit = str(value.unit) if hasattr(value, "unit") else None
                digest = (arr.dtype.str, arr.shape, hashlib.blake2b(arr.view(np.uint8).ravel()).hexdigest())
                if digest not in saved:
                    saved[digest] = os.path.join(folder, f"array_{len(saved):03d}.npy")
                    np.save(saved[digest], arr)
                kwargs[key] = ("__array__", saved[digest], unit)
            elif isinstance(value, dict):
                kwargs[key] = {k: np.asarray(getattr(v, "value", v)) for k, v in value.items()}
            else:
                kwargs[key] = value
        shared.append(kwargs)
    return shared


def _load_arrays(kwargs):
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, tuple) and len(value) == 3 and value[0] == "__array__":
            arr = np.load(value[1], mmap_mode="r")
            if value[2] is not None:
                arr = np.asarray(arr) * u.Unit(value[2])
            out[key] = arr
        else:
            out[key] = value
    return out


#: Seconds between a worker's checks that the process that started it is still alive.
PARENT_POLL_S = 1.0


def _exit_with_parent(parent_pid):
    """End this worker as soon as its parent is gone (killed, out of memory): no orphaned training goes on."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def _worker_init(threads, parent_pid=None):
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True,
                         name="astronn_gaiacal_parent_watch").start()
    with contextlib.suppress(RuntimeError):  # already initialised: keep TF's setting
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _train_one(factory, seed, fit_kwargs):
    """Seed Keras, build, fit: one training, the same in this process and in a worker."""
    keras.utils.set_random_seed(int(seed))
    net = factory()
    net.fit(**fit_kwargs)
    return net


def _worker_train(factory, seed, kwargs, folder):
    with contextlib.redirect_stdout(sys.stderr):
        _train_one(factory, seed, _load_arrays(kwargs)).save(folder)
    return folder


def _check_picklable(job):
    try:
        pickle.dumps(job.factory)
    except Exception as exc:  # lambdas, closures, classes defined in __main__ under some launchers
        raise TypeError(
            f"factory of {job.name!r} cannot be sent to a worker process ({exc}); use a module-level "
            "function or functools.partial, or train with n_jobs=1"
        ) from None


def train_jobs(jobs, n_jobs=None, progress=True):
    """Train the jobs, ``n_jobs`` at a time, and return the trained models in job order.

    Parameters
    ----------
    jobs : sequence of TrainJob
    n_jobs : int, optional
        Worker processes (default :func:`default_jobs`).  ``1`` trains in this
        process, one job after another, with no pickling.
    progress : bool
        A progress bar over finished jobs.

    Returns
    -------
    list
        Trained models (loaded back from their saved folders when trained in
        workers; their ``folder_name`` is then ``None``).

    Raises
    ------
    TypeError
        A factory that cannot be pickled (``n_jobs > 1``).
    ValueError
        ``n_jobs < 1``, or a ``luminosity_from_job`` that is not an earlier job.
    """
    jobs = list(jobs)
    n_jobs = default_jobs(len(jobs)) if n_jobs is None else int(n_jobs)
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    for i, job in enumerate(jobs):
        dep = job.luminosity_from_job
        if dep is not None and not (isinstance(dep, int) and 0 <= dep < i):
            raise ValueError(f"luminosity_from_job of {job.name!r} must be the index of an earlier job, got {dep!r}")
        if dep is not None and "luminosity_from" in job.fit_kwargs:
            raise ValueError(f"{job.name!r} gives both luminosity_from_job and fit_kwargs['luminosity_from']")
    if n_jobs == 1 or len(jobs) <= 1:
        done = []
        for job in tqdm(jobs, desc="training", unit="model", disable=not progress or len(jobs) < 2):
            kwargs = job.fit_kwargs if job.luminosity_from_job is None else dict(
                job.fit_kwargs, luminosity_from=done[job.luminosity_from_job])
            done.append(_train_one(job.factory, job.seed, kwargs))
        return done
    for job in jobs:
        _check_picklable(job)
    n_jobs = min(n_jobs, len(jobs))
    threads = max(1, available_cores() // n_jobs)
    with owned_tempdir("train") as tmp:  # a killed run's copy of the spectra is removed by the next run
        shared = _share_arrays(jobs, tmp)
        folders = [os.path.join(tmp, f"model_{i:03d}") for i in range(len(jobs))]
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(threads, os.getpid())) as pool:
            futures, finished, waiting = {}, set(), list(range(len(jobs)))

            def submit_ready():
                # in job order; a dependent job waits for its source, the others keep the workers busy
                for i in list(waiting):
                    if len(futures) - len(finished) >= n_jobs:
                        return
                    dep = jobs[i].luminosity_from_job
                    if dep is not None and dep not in finished:
                        continue
                    kw = shared[i] if dep is None else dict(shared[i], luminosity_from=folders[dep])
                    futures[pool.submit(_worker_train, jobs[i].factory, jobs[i].seed, kw, folders[i])] = i
                    waiting.remove(i)

            bar = tqdm(total=len(jobs), desc=f"training ({n_jobs} workers)", unit="model", disable=not progress)
            try:
                submit_ready()
                while len(finished) < len(jobs):
                    fut = next(as_completed([f for f, i in futures.items() if i not in finished]))
                    if fut.exception() is not None:  # the worker's own exception type, re-raised here
                        for other in futures:
                            other.cancel()
                        fut.result()
                    finished.add(futures[fut])
                    bar.update()
                    submit_ready()
            except BaseException:  # Ctrl-C, SIGTERM (see cli): stop the workers before their folder is removed
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
                raise
            finally:
                bar.close()
        models = []
        with contextlib.redirect_stdout(sys.stderr):
            for folder in folders:
                net = load_model_folder(folder)
                net.folder_name = None
                net.fullfilepath = None
                models.append(net)
    return models
