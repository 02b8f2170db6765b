"""Offset network on Gaia-sized inputs: per-row masks in the fused kernel against shared masks, same run, one core.

The paper's offset network (3 features -> Dense 32 tanh -> MC dropout -> Dense 16 tanh -> MC dropout
-> Dense 1, rate 0.3) at ``mc_num`` passes, on ``--rows`` random rows streamed in chunks, timed as

* ``per-row, fused kernel`` -- :func:`~astronn_gaiacal.nn.inference.mc_predict`'s default on a CPU: the
  Numba kernel of :mod:`astronn_gaiacal.nn.fused_dense`, masks independent for every row and pass;
* ``shared per pass`` -- :func:`~astronn_gaiacal.nn.inference.mc_predict_shared_masks` (each pass's masks
  shared by a batch of 4096 rows and folded into the weights: the fast path before the kernel);
* ``per-row, TensorFlow`` -- ``mc_predict(..., fused_kernels=False)``, the per-row path before the kernel
  (on ``--tf-rows`` rows: it is several times slower).

Everything runs on one thread (TensorFlow's intra- and inter-op pools and the kernel), and the
measurements are interleaved (``--repeats`` rounds), so that a machine slowing down mid-run affects
all of them alike; the ratio of each round is printed, then the median ratio.

    python benchmarks/bench_offset_masks.py [--rows 1000000] [--mc-num 100] [--repeats 3]

Not part of the test suite.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import astronn_gaiacal  # noqa: E402,F401  (compatibility layer before TensorFlow)
import tensorflow as tf  # noqa: E402


def offset_model():
    """The paper's multivariate offset network with the plugin's initial weights."""
    from astronn_gaiacal._compat import keras
    from astronn_gaiacal.models import ApogeeGaiaBCNN

    net = ApogeeGaiaBCNN(offset="multivariate")
    feats = keras.Input((len(net.offset_features),), name="offset_features")
    return keras.Model(feats, net.offset_network(feats))


def rows_per_s(run, rows, chunk, seed):
    """Rows/s of ``run(features)`` over ``rows`` random rows in chunks of ``chunk``."""
    rng = np.random.default_rng(seed)
    done, seconds = 0, 0.0
    while done < rows:
        m = min(chunk, rows - done)
        feats = rng.normal(size=(m, 3)).astype(np.float32)
        t0 = time.perf_counter()
        mean, var = run(feats)
        seconds += time.perf_counter() - t0
        assert mean.shape == (m, 1) and np.isfinite(var).all()
        done += m
    return rows / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per measurement (default 1e6)")
    parser.add_argument("--tf-rows", type=int, default=100_000,
                        help="rows of the per-row TensorFlow measurement (default 1e5; 0 skips it)")
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per call (default 250000)")
    parser.add_argument("--mc-num", type=int, default=100, help="MC-dropout passes (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args(argv)
    for name in ("rows", "chunk", "mc_num", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    tf.config.set_visible_devices([], "GPU")
    tf.config.threading.set_intra_op_parallelism_threads(1)  # also the fused kernels' thread count
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from astronn_gaiacal.nn.inference import mc_predict, mc_predict_shared_masks

    model = offset_model()
    mc = args.mc_num
    paths = {
        "per-row, fused kernel": lambda f: mc_predict(model, f, mc_num=mc, progress=False),
        "shared per pass": lambda f: mc_predict_shared_masks(model, f, mc_num=mc, progress=False),
    }
    if args.tf_rows > 0:
        paths["per-row, TensorFlow"] = lambda f: mc_predict(model, f, mc_num=mc, progress=False, fused_kernels=False)
    for run in paths.values():  # compile / trace
        run(np.zeros((min(args.chunk, 4096), 3), np.float32))
    print(f"TensorFlow {tf.__version__}, one thread, mc_num={mc}, {args.rows} rows in chunks of {args.chunk}, "
          f"{args.repeats} interleaved rounds")
    rates = {name: [] for name in paths}
    for r in range(args.repeats):
        for name, run in paths.items():
            n = args.tf_rows if name == "per-row, TensorFlow" else args.rows
            rates[name].append(rows_per_s(run, n, args.chunk, seed=r))
        ratio = rates["per-row, fused kernel"][-1] / rates["shared per pass"][-1]
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} rows/s" for k, v in rates.items())
              + f"; per-row fused / shared {ratio:.2f}")
    print()
    print(f"{'path':26s} {'rows/s (median)':>16s} {'vs shared':>10s}")
    shared = float(np.median(rates["shared per pass"]))
    for name, values in rates.items():
        med = float(np.median(values))
        print(f"{name:26s} {med:16,.0f} {med / shared:10.2f}")
    ratios = np.array(rates["per-row, fused kernel"]) / np.array(rates["shared per pass"])
    print(f"\nper-row fused / shared, median of the rounds: {np.median(ratios):.2f} "
          f"(target >= 0.50: {'met' if np.median(ratios) >= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
