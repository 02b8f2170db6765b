"""Benchmark: catalogue-scale zero-points on a Dask LocalCluster, 1 worker vs 2 workers (rows/s).

Trains a multivariate model for one epoch on toy stars (its offset network has the paper's size:
3 features -> 32 -> 16 -> 1 with MC dropout), writes a mock Gaia table (phot_g_mean_mag, bp_rp, teff) as
Parquet, and times :func:`astronn_gaiacal.distributed.zeropoint_catalog` on LocalClusters of 1 and 2
single-threaded workers (model loading excluded: each worker loads it once before the clock starts).
The reference row is the same model evaluated in this process (``net.predict_zeropoint``, TensorFlow's
whole thread pool), the path astroNN users have.  Prints a table and the time 1.8e9 Gaia DR3 rows would
take on N workers at the measured per-worker rate.

    python benchmarks/scale_zeropoint.py [--rows 400000] [--partitions 8] [--mc-num 50]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

GAIA_DR3_ROWS = 1.8e9


def _warm(folder):
    """Load the model on a worker before timing (returns its class name, not the model)."""
    from astronn_gaiacal import distributed as scale

    return type(scale.worker_model(folder)).__name__


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--mc-num", type=int, default=50)
    args = parser.parse_args(argv)

    import pandas as pd
    from distributed import Client, LocalCluster

    from _toy import toy_survey
    from astronn_gaiacal import distributed as scale
    from astronn_gaiacal._compat import keras
    from astronn_gaiacal.models import DenseGaiaBNN, load

    work = tempfile.mkdtemp(prefix="scale_bench_")
    try:
        keras.utils.set_random_seed(0)
        d = toy_survey(400, seed=1, n_pixels=8)
        net = DenseGaiaBNN(hidden=(16,), offset="multivariate")
        net.max_epochs, net.verbose = 1, 0
        net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"], offset_features=d["features"])
        folder = net.save(os.path.join(work, "model"))
        rng = np.random.default_rng(0)
        n = args.rows
        df = pd.DataFrame({"source_id": np.arange(n), "phot_g_mean_mag": rng.uniform(9, 17, n),
                           "bp_rp": rng.uniform(0.8, 2.7, n), "teff": rng.uniform(3900, 5400, n)})
        src = os.path.join(work, "gaia")
        os.makedirs(src)
        for i, rows in enumerate(np.array_split(np.arange(n), args.partitions)):
            df.iloc[rows].to_parquet(os.path.join(src, f"gaia-{i:03d}.parquet"))

        results = []
        ref = load(folder)
        ref.verbose = 0
        feats = {c: df[c].to_numpy() for c in ("phot_g_mean_mag", "bp_rp", "teff")}
        ref.predict_zeropoint({k: v[:1000] for k, v in feats.items()}, mc_num=args.mc_num)  # trace once
        t = time.perf_counter()
        ref.predict_zeropoint(feats, mc_num=args.mc_num, batch_size=65536)
        results.append(("in-process predict_zeropoint (all threads)", 1, n / (time.perf_counter() - t)))
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                client.run(_warm, folder)
                out = os.path.join(work, f"out{workers}")
                s = scale.zeropoint_catalog(folder, src, out, scheduler=client, mc_num=args.mc_num, progress=False)
                assert s["complete"] and s["rows"] == n
                results.append((f"scale.zeropoint_catalog, LocalCluster {workers} worker(s)", workers,
                                s["rows_per_s"]))
        base = results[0][2]
        print(f"\n{n} rows, {args.partitions} partitions, mc_num={args.mc_num}, {os.cpu_count()} CPU cores")
        print(f"{'setup':55s} {'workers':>7s} {'rows/s':>10s} {'rows/s/worker':>14s} {'vs in-process':>14s}")
        for name, w, rate in results:
            print(f"{name:55s} {w:7d} {rate:10.0f} {rate / w:14.0f} {rate / base:14.2f}")
        per_worker = results[1][2]
        scaling = results[2][2] / results[1][2]
        print(f"\n2-worker / 1-worker speed-up: {scaling:.2f} (efficiency {scaling / 2:.0%})")
        print(f"1.8e9 Gaia DR3 rows at {per_worker:.0f} rows/s per worker (mc_num={args.mc_num}):")
        for workers in (1, 16, 64, 256):
            hours = GAIA_DR3_ROWS / (per_worker * workers) / 3600
            print(f"  N = {workers:4d} workers: {hours:10.1f} h")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
