"""``zeropoint MODEL --catalog C --out D`` as a user runs it, against the in-process shared-mask kernel, same run.

Trains a small multivariate model (its offset network has the paper's size, 3 -> 32 -> 16 -> 1 with MC
dropout), writes a mock Gaia catalogue of ``--rows`` rows as Parquet partitions, and measures:

* ``in-process, masks shared per pass``: ``model.predict_zeropoint(..., shared_masks=True)`` in this
  process (each pass's masks shared by a batch of rows; TensorFlow's default threads), model loaded and
  traced before the clock starts -- the fastest path, which correlates the MC noise of a batch;
* ``--catalog, first run``: the CLI in a new process with its defaults, wall time from the command's start
  to its exit, start-up and Parquet I/O included: the calibrated trend the folder stores, evaluated from
  its JSON (the workers never load the network);
* ``--catalog, same command again``: the rerun, which must resume (write nothing) in a fraction of the time;
* ``--catalog --learned``: the offset network the model learned, MC dropout with independent per-row
  masks (the fused kernel), the network loaded once per worker.

Prints rows/s, the ratio of the CLI's rows/s to the in-process kernel's (target >= 0.5), and the rerun's
time as a fraction of the first (target <= 1/3).  Not part of the test suite.

    python benchmarks/bench_catalog_cli.py [--rows 1000000] [--partitions 8] [--repeats 2]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

FEATURES = ("phot_g_mean_mag", "bp_rp", "teff")


def _model(folder):
    from _toy import toy_survey
    from astronn_gaiacal._compat import keras
    from astronn_gaiacal.models import DenseGaiaBNN

    keras.utils.set_random_seed(0)
    d = toy_survey(400, seed=1, n_pixels=8)
    net = DenseGaiaBNN(hidden=(16,), offset="multivariate")
    net.max_epochs, net.verbose = 1, 0
    net.fit(d["spectra"], d["parallax"], d["parallax_error"], magnitude=d["mag"], offset_features=d["features"])
    return net.save(folder)


def _catalogue(folder, rows, partitions):
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"source_id": np.arange(rows), "phot_g_mean_mag": rng.uniform(9, 17, rows),
                       "bp_rp": rng.uniform(0.8, 2.7, rows), "teff": rng.uniform(3900, 5400, rows)})
    os.makedirs(folder)
    for i, part in enumerate(np.array_split(np.arange(rows), partitions)):
        df.iloc[part].to_parquet(os.path.join(folder, f"gaia-{i:03d}.parquet"))
    return {c: df[c].to_numpy() for c in FEATURES}


def _cli(args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "astronn_gaiacal", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"astronn-gaiacal {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--mc-num", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds (default 2)")
    args = parser.parse_args(argv)
    for name in ("rows", "partitions", "mc_num", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")

    import astronn_gaiacal  # noqa: F401  (compatibility layer before TensorFlow)
    from astronn_gaiacal.models import load

    work = tempfile.mkdtemp(prefix="bench_catalog_cli_")
    try:
        folder = _model(os.path.join(work, "model"))
        feats = _catalogue(os.path.join(work, "gaia"), args.rows, args.partitions)
        ref = load(folder)
        ref.verbose = 0
        ref.predict_zeropoint({k: v[:4096] for k, v in feats.items()}, mc_num=args.mc_num, shared_masks=True)
        estimate = (ref.zeropoint_calibration.estimate if ref.zeropoint_calibration is not None else None)
        print(f"stored calibration: {estimate}", flush=True)
        rows = {"in-process, masks shared per pass": [], "--catalog, first run": [], "--catalog, same command again": [],
                "--catalog --learned": []}
        for r in range(args.repeats):
            t = time.perf_counter()
            ref.predict_zeropoint(feats, mc_num=args.mc_num, shared_masks=True)
            rows["in-process, masks shared per pass"].append(time.perf_counter() - t)
            out = os.path.join(work, f"out{r}")
            command = ["zeropoint", folder, "--catalog", os.path.join(work, "gaia"), "--mc-num", str(args.mc_num),
                       "--out", out]
            rows["--catalog, first run"].append(_cli(command))
            rows["--catalog, same command again"].append(_cli(command))
            rows["--catalog --learned"].append(_cli(command[:-2] + ["--out", out + "_learned", "--learned"]))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in rows.items()), flush=True)
        print(f"\n{args.rows} rows, {args.partitions} partitions, mc_num={args.mc_num}, {os.cpu_count()} CPU cores, "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"{'path':34s} {'seconds (median)':>17s} {'rows/s':>10s}")
        med = {k: float(np.median(v)) for k, v in rows.items()}
        for name, seconds in med.items():
            print(f"{name:34s} {seconds:17.1f} {args.rows / seconds:10,.0f}")
        ratios = np.array(rows["in-process, masks shared per pass"]) / np.array(rows["--catalog, first run"])
        rerun = np.array(rows["--catalog, same command again"]) / np.array(rows["--catalog, first run"])
        print(f"\n--catalog rows/s / in-process shared-mask rows/s, per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios)} (target >= 0.50: "
              f"{'met' if np.median(ratios) >= 0.5 else 'NOT met'})")
        learned = np.array(rows["in-process, masks shared per pass"]) / np.array(rows["--catalog --learned"])
        print(f"--catalog --learned rows/s / in-process shared-mask rows/s, per round: "
              f"{', '.join(f'{x:.2f}' for x in learned)}")
        print(f"rerun time / first run, per round: {', '.join(f'{x:.2f}' for x in rerun)} (target <= 0.33: "
              f"{'met' if np.max(rerun) <= 1 / 3 else 'NOT met'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
