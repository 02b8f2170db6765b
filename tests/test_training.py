"""Trainings in worker processes equal trainings in this process."""
import functools

import numpy as np
import pytest

import astronn_gaiacal  # noqa: F401
from astronn_gaiacal.models import DeepEnsemble
from astronn_gaiacal.models.workers import TrainJob, default_jobs, train_jobs

from _toy import N_PIX, toy_model, toy_survey


@pytest.fixture(scope="module")
def data():
    return toy_survey(200, seed=5, n_pixels=N_PIX, zeropoint=-0.1)


def _fit_kwargs(data):
    return dict(spectra=data["spectra"], parallax=data["parallax"], parallax_error=data["parallax_error"],
                magnitude=data["mag"])


def test_workers_reproduce_in_process_training(data):
    factory = functools.partial(toy_model, epochs=3)
    serial = DeepEnsemble.train(factory, n_members=2, seed=3, progress=False, n_jobs=1, **_fit_kwargs(data))
    parallel = DeepEnsemble.train(factory, n_members=2, seed=3, progress=False, n_jobs=2, **_fit_kwargs(data))
    assert len(parallel) == 2 and parallel.offset == "constant"
    for a, b in zip(serial.members, parallel.members):
        for wa, wb in zip(a.keras_model.get_weights(), b.keras_model.get_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-3, atol=1e-5)
        assert b.folder_name is None
        # the loaded member carries the same normalisation as the in-process one
        np.testing.assert_allclose(np.asarray(a.input_mean["input"], float), np.asarray(b.input_mean["input"], float))
        np.testing.assert_allclose(np.asarray(a.labels_std["output"], float), np.asarray(b.labels_std["output"], float))
    w0 = parallel.members[0].keras_model.get_weights()[0]
    w1 = parallel.members[1].keras_model.get_weights()[0]
    assert not np.array_equal(w0, w1)  # seeds 3 and 4


def test_unpicklable_factory_is_refused(data):
    jobs = [TrainJob(lambda: toy_model(), 0, _fit_kwargs(data), "a"), TrainJob(lambda: toy_model(), 1, {}, "b")]
    with pytest.raises(TypeError, match="factory of 'a' cannot be sent to a worker"):
        train_jobs(jobs, n_jobs=2, progress=False)


def test_worker_error_keeps_its_type(data):
    bad = dict(_fit_kwargs(data), parallax=data["parallax"][:-1])  # one parallax short
    jobs = [TrainJob(functools.partial(toy_model, epochs=1), k, bad, f"m{k}") for k in range(2)]
    with pytest.raises(ValueError, match="parallax"):
        train_jobs(jobs, n_jobs=2, progress=False)


def test_job_counts():
    assert default_jobs(1) == 1
    assert 1 <= default_jobs(100) <= 100
    with pytest.raises(ValueError, match="n_jobs"):
        train_jobs([], n_jobs=0)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_dependent_job_starts_from_its_source_luminosity_network(data, n_jobs):
    """A second-stage job (luminosity_from_job) gets the trained luminosity network of its source job."""
    trend = dict(_fit_kwargs(data), offset_features=data["features"])
    jobs = [TrainJob(functools.partial(toy_model, epochs=2), 3, _fit_kwargs(data), "stage 1"),
            TrainJob(functools.partial(toy_model, offset="multivariate", epochs=2), 4, trend, "stage 2",
                     luminosity_from_job=0)]
    first, second = train_jobs(jobs, n_jobs=n_jobs, progress=False)
    assert second.offset == "multivariate" and second.luminosity_frozen
    for a, b in zip(first.luminosity_model.get_weights(), second.luminosity_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dependencies_must_point_back(data):
    job = TrainJob(functools.partial(toy_model, epochs=1), 0, _fit_kwargs(data), "x", luminosity_from_job=1)
    with pytest.raises(ValueError, match="earlier job"):
        train_jobs([job, job], n_jobs=1, progress=False)
    both = TrainJob(functools.partial(toy_model, epochs=1), 0, dict(_fit_kwargs(data), luminosity_from="dir"), "y",
                    luminosity_from_job=0)
    with pytest.raises(ValueError, match="both"):
        train_jobs([TrainJob(functools.partial(toy_model, epochs=1), 0, _fit_kwargs(data)), both], n_jobs=1,
                   progress=False)


_ORPHAN_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from astronn_gaiacal.models.workers import _worker_init

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(1, os.getpid()))
    worker = pool.submit(os.getpid).result()
    pool.submit(time.sleep, 120)  # a long training
    print(worker, flush=True)
    time.sleep(120)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\\tZ" not in next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, StopIteration):
        return False


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)  # as the out-of-memory killer does
        parent.wait()
        deadline = time.time() + 30
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
