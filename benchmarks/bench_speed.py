"""Speed of the plugin's MC-dropout inference and training against astroNN 1.1.0, in one run.

Both models are built in this process with the paper's architecture (Conv1D 2/4 x 8,
MaxPool 4, Dense 164/64, offset Dense 32/16/1, dropout 0.3, L2 5e-9) and *identical*
random weights (astroNN's weights are copied into the plugin model), and see identical
random spectra.  Measured, each a median over repeats:

* the machine's sgemm rate (NumPy and TensorFlow, at the shape of the network's big dense
  layer) and the floor it implies: stars/s at ``mc_num`` if every multiply-add of the
  forward pass ran at that rate;
* ``ApogeeDR14GaiaDR2BCNN.predict`` (astroNN) vs ``ApogeeGaiaBCNN.predict`` (plugin), mc_num=100,
  and the plugin again with ``inference_fused = False`` (every layer a TensorFlow operation);
* astroNN's ``fit`` vs the plugin's ``fit`` at the paper's hyperparameters (batch 64),
  spectra/s over whole epochs after the first, in ``--pairs`` interleaved pairs (astroNN, plugin,
  astroNN, plugin, ...: the shared machine's speed drifts, and a pair sees the same state), with
  the ratio of each pair and the best and median pair ratio (the training rows give medians);
* the offset model alone on streamed Gaia-like rows (rows/s at mc_num=100, per core too), with
  dropout masks drawn per row (``mc_predict``: on a CPU the fused kernel of
  :mod:`astronn_gaiacal.nn.fused_dense`) and per pass (``mc_predict_shared_masks``);
  ``benchmarks/bench_offset_masks.py`` compares the two on one core, interleaved.

Peak memory is the peak resident set size above the start of each measurement (sampled).

Usage::

    python benchmarks/bench_speed.py                 # defaults, a few minutes on 2 cores
    python benchmarks/bench_speed.py --offset-rows 10000000 --repeats 5
    python benchmarks/bench_speed.py --device gpu    # both packages on the GPU (a GPU machine)

The plugin rows use the device's path (:mod:`astronn_gaiacal.nn.device`): the fused Numba
kernels on a CPU, TensorFlow/cuDNN on a GPU (where the "without fused kernels" rows repeat it).

Not part of the test suite.
"""
import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import astronn_gaiacal  # noqa: E402,F401  (compatibility layer before TensorFlow)
import tensorflow as tf  # noqa: E402

from astronn_gaiacal.constants import APOGEE_SPECTRUM_LENGTH as NPIX  # noqa: E402
from astronn_gaiacal.nn.inference import mc_predict  # noqa: E402


# ----------------------------------------------------------------------------- helpers
def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the lifetime peak is all we have
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def peak_memory():
    """Yield a dict whose 'peak_mb' is set to the peak RSS above the start of the block."""
    out = {"peak_mb": 0.0}
    start = _rss_bytes()
    peak = [start]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        out["peak_mb"] = (peak[0] - start) / 2**20


def timed(fn, repeats):
    """Median wall time of ``repeats`` calls (after one warm-up call) and the peak memory."""
    fn()
    times = []
    with peak_memory() as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), mem["peak_mb"]


def sgemm_rate(repeats, rows=1024):
    """sgemm GFLOP/s at the shape of the network's 7512 -> 164 dense layer (NumPy, TensorFlow)."""
    rng = np.random.default_rng(1)
    a = rng.random((rows, 7512), dtype=np.float32)
    b = rng.random((7512, 164), dtype=np.float32)
    flop = 2.0 * rows * 7512 * 164
    t_np, _ = timed(lambda: a @ b, repeats * 3)
    ta, tb = tf.constant(a), tf.constant(b)
    t_tf, _ = timed(lambda: tf.matmul(ta, tb).numpy(), repeats * 3)
    return flop / t_np / 1e9, flop / t_tf / 1e9


def forward_flop(keras_model):
    """Multiply-adds x 2 of one forward pass of a (nested) Keras model: Conv1D and Dense layers."""
    from astronn_gaiacal._compat import keras

    total = 0
    for layer in _all_layers(keras_model):
        if isinstance(layer, keras.layers.Conv1D):
            k, c, o = layer.kernel.shape
            total += int(layer.output_shape[1]) * int(k) * int(c) * int(o)
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return 2 * total


def _all_layers(model):
    seen = set()
    for layer in model.layers:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


# ----------------------------------------------------------------------------- models
def build_pair(seed=0):
    """astroNN's ApogeeDR14GaiaDR2BCNN and the plugin's ApogeeGaiaBCNN with identical weights."""
    from astronn_gaiacal.models.paper import astronn_twin

    return astronn_twin(NPIX, seed=seed)


def spectra(n, seed=2):
    rng = np.random.default_rng(seed)
    return (1.0 + rng.normal(0, 0.02, (n, NPIX))).astype(np.float32)


# ----------------------------------------------------------------------------- measurements
def bench_inference(theirs, ours, n, mc_num, repeats):
    spec = spectra(n)
    x_theirs = np.c_[spec, np.full((n, 1), 9.3), np.ones((n, 3))]
    theirs.mc_num = ours.mc_num = mc_num
    t_a, m_a = timed(lambda: theirs.predict(x_theirs), repeats)
    t_b, m_b = timed(lambda: ours.predict(spec), repeats)
    ours.inference_fused = False  # the same walk with every layer a TensorFlow operation
    try:
        t_c, m_c = timed(lambda: ours.predict(spec), repeats)
    finally:
        ours.inference_fused = None  # the device's choice (astronn_gaiacal.nn.device)
    return n / t_a, m_a, n / t_b, m_b, n / t_c, m_c


class _EpochTimer(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t0)


def _training_set(n, seed=3):
    rng = np.random.default_rng(seed)
    spec = spectra(n, seed)
    mag = rng.uniform(8, 12.5, n)
    fakemag = 10 ** rng.uniform(1, 2, n)
    plx_err = rng.uniform(0.02, 0.06, n)
    plx = fakemag * 10 ** (-mag / 5) - 0.05 + rng.normal(0, plx_err)
    return spec, mag, plx, plx_err


def _fit_rate(kind, data, epochs):
    """Spectra/s (median over the epochs after the first) and peak MB of one fit: ``'astroNN'``, ``'plugin'``
    or ``'plugin unfused'`` (``train_fused = False``); the same seed, so the same starting weights, every time."""
    from astroNN.models import ApogeeDR14GaiaDR2BCNN

    from astronn_gaiacal.models import ApogeeGaiaBCNN

    spec, mag, plx, plx_err = data
    n = len(spec)
    tf.keras.utils.set_random_seed(7)
    timer = _EpochTimer()
    if kind == "astroNN":
        net = ApogeeDR14GaiaDR2BCNN()
        net.num_hidden = [164, 64, 32, 16]
        x = np.c_[spec, mag, np.ones((n, 3))]
        fit = lambda: net.fit(x, plx[:, None], labels_err=plx_err[:, None])  # noqa: E731
    else:
        net = ApogeeGaiaBCNN(offset="constant")
        net.train_fused = None if kind == "plugin" else False
        # the default training: spectra degraded to the S/N of application every step (astronn_gaiacal.nn.noise)
        fit = lambda: net.fit(spec, plx, plx_err, magnitude=mag, snr=np.full(n, 300.0))  # noqa: E731
    net.verbose, net.max_epochs, net.batch_size, net.callbacks = 0, epochs, 64, [timer]
    with peak_memory() as mem, contextlib.redirect_stdout(open(os.devnull, "w")):
        fit()
    n_train = (n - int(n * net.val_size)) // 64 * 64
    return n_train / float(np.median(timer.times[1:])), mem["peak_mb"]


def bench_training(n, epochs, pairs=3, unfused=True):
    """astroNN's fit and the plugin's, interleaved in ``pairs`` pairs (astroNN, plugin, astroNN, plugin, ...),
    so that a drift of the shared machine's speed hits both members of a pair alike; then the plugin with
    ``train_fused = False`` once.

    Returns
    -------
    dict
        ``'astroNN'``, ``'plugin'``: lists of ``(spectra/s, peak MB)``, one per pair; ``'plugin unfused'``:
        ``(spectra/s, peak MB)`` or None; ``'ratios'``: plugin over astroNN, per pair.
    """
    data = _training_set(n)
    out = {"astroNN": [], "plugin": []}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # astroNN may write run folders into the working directory
        try:
            for i in range(pairs):
                for kind in ("astroNN", "plugin"):
                    out[kind].append(_fit_rate(kind, data, epochs))
                print(f"  training pair {i + 1}/{pairs}: astroNN {out['astroNN'][-1][0]:.1f}, plugin "
                      f"{out['plugin'][-1][0]:.1f} spectra/s, ratio {out['plugin'][-1][0] / out['astroNN'][-1][0]:.2f}",
                      flush=True)
            out["plugin unfused"] = _fit_rate("plugin unfused", data, epochs) if unfused else None
        finally:
            os.chdir(cwd)
    out["ratios"] = [b[0] / a[0] for a, b in zip(out["astroNN"], out["plugin"])]
    return out


def offset_model():
    """The paper's multivariate offset network (3 features -> Dense 32 -> 16 -> 1, tanh, dropout 0.3)."""
    from astronn_gaiacal._compat import keras
    from astronn_gaiacal.models import ApogeeGaiaBCNN

    net = ApogeeGaiaBCNN(offset="multivariate")
    feats = keras.Input((len(net.offset_features),), name="offset_features")
    return keras.Model(feats, net.offset_network(feats))


def bench_offset(model, rows, mc_num, chunk, shared_masks=False):
    """Rows/s of the offset network alone, streamed in chunks of ``chunk`` rows.

    ``shared_masks=True`` uses :func:`~astronn_gaiacal.nn.inference.mc_predict_shared_masks`
    (each pass's masks shared by a batch of 4096 rows, folded into the weights).
    """
    from astronn_gaiacal.nn.inference import mc_predict_shared_masks

    rng = np.random.default_rng(4)
    width = int(model.input_shape[1])
    run = (lambda f: mc_predict_shared_masks(model, f, mc_num=mc_num, progress=False)) if shared_masks else (
        lambda f: mc_predict(model, f, mc_num=mc_num, progress=False))
    run(rng.normal(size=(min(chunk, rows), width)))  # compile
    done, t0 = 0, time.perf_counter()
    with peak_memory() as mem:
        while done < rows:
            m = min(chunk, rows - done)
            feats = rng.normal(size=(m, width)).astype(np.float32)
            mean, var = run(feats)
            assert mean.shape == (m, 1) and np.isfinite(var).all()
            done += m
    return rows / (time.perf_counter() - t0), mem["peak_mb"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stars", type=int, default=256, help="stars per inference run (default 256)")
    parser.add_argument("--mc-num", type=int, default=100, help="MC-dropout passes (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median; default 3)")
    parser.add_argument("--train-stars", type=int, default=2560, help="training-set size (default 2560)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit; the first is not timed (default 3)")
    parser.add_argument("--offset-rows", type=int, default=1_000_000, help="Gaia rows for the offset model (default 1e6)")
    parser.add_argument("--offset-chunk", type=int, default=250_000, help="rows per streamed chunk (default 250000)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="interleaved (astroNN, plugin) training pairs; the rows give medians (default 3)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-inference", action="store_true", help="skip the inference and offset-model rows")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow intra- and inter-op threads for both packages (default: TensorFlow's; 1 is "
                             "the setting of each worker process when trainings run two at a time on 2 cores)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="run both packages on the CPU (GPUs hidden) or on the first GPU (default cpu)")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "gpu" and not gpus:
        parser.error("--device gpu: TensorFlow sees no GPU on this machine")
    if args.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    for name in ("stars", "mc_num", "repeats", "train_stars", "offset_rows", "offset_chunk", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    cores = os.cpu_count() or 1
    print(f"TensorFlow {tf.__version__}, device {args.device}, {cores} CPU core(s), threads {args.threads or 'default'}; "
          f"mc_num={args.mc_num}, repeats={args.repeats}")

    gf_np, gf_tf = sgemm_rate(args.repeats)
    sgemm = max(gf_np, gf_tf)
    theirs, ours = build_pair()
    flop = forward_flop(ours.keras_model_predict)
    floor = sgemm * 1e9 / (flop * args.mc_num)
    print(f"sgemm (1024x7512 @ 7512x164): numpy {gf_np:.1f} GFLOP/s, TensorFlow {gf_tf:.1f} GFLOP/s")
    print(f"forward pass: {flop / 1e6:.2f} MFLOP/spectrum; floor at mc_num={args.mc_num}: {floor:.1f} stars/s; "
          f"training floor (3 x forward): {sgemm * 1e9 / (3 * flop):.0f} spectra/s")

    rows = []
    if not args.skip_inference:
        a, ma, b, mb, c, mc = bench_inference(theirs, ours, args.stars, args.mc_num, args.repeats)
        rows.append(("inference astroNN 1.1.0", a, "stars/s", 1.0, a / floor, ma))
        rows.append(("inference plugin", b, "stars/s", b / a, b / floor, mb))
        rows.append(("  plugin without fused kernels", c, "stars/s", c / a, c / floor, mc))
    train_floor = sgemm * 1e9 / (3 * flop)
    if not args.skip_training:
        tr = bench_training(args.train_stars, args.epochs, args.pairs)
        ta, tma = (float(np.median([r[i] for r in tr["astroNN"]])) for i in (0, 1))
        tb, tmb = (float(np.median([r[i] for r in tr["plugin"]])) for i in (0, 1))
        tc, tmc = tr["plugin unfused"]
        rows.append(("training astroNN 1.1.0", ta, "spectra/s", 1.0, ta / train_floor, tma))
        rows.append(("training plugin", tb, "spectra/s", float(np.median(tr["ratios"])), tb / train_floor, tmb))
        rows.append(("  plugin without fused kernels", tc, "spectra/s", tc / ta, tc / train_floor, tmc))
    i_train = len(rows) - 2
    if not args.skip_inference:
        omodel = offset_model()
        offset_floor = sgemm * 1e9 / (forward_flop(omodel) * args.mc_num)
        for label, shared in (("masks per row", False), ("masks per pass", True)):
            orate, om = bench_offset(omodel, args.offset_rows, args.mc_num, args.offset_chunk, shared_masks=shared)
            rows.append((f"offset model, {label}", orate, "rows/s", float("nan"), orate / offset_floor, om))
            rows.append(("  per core", orate / cores, "rows/s", float("nan"), float("nan"), float("nan")))

    print()
    print(f"{'measurement':34s} {'throughput':>12s} {'unit':10s} {'x astroNN':>10s} {'of floor':>9s} {'peak MB':>8s}")
    for name, value, unit, ratio, frac, mem in rows:
        r = f"{ratio:10.2f}" if np.isfinite(ratio) else f"{'':10s}"
        fr = f"{frac:9.0%}" if np.isfinite(frac) else f"{'':9s}"
        me = f"{mem:8.0f}" if np.isfinite(mem) else f"{'':8s}"
        print(f"{name:34s} {value:12.1f} {unit:10s} {r} {fr} {me}")
    print()
    if not args.skip_inference:
        inf_ok = rows[1][3] >= 5 and rows[1][4] >= 0.5
        print(f"target inference >= 5x astroNN and >= 50% of floor: {'met' if inf_ok else 'NOT met'}")
    if not args.skip_training:
        ratios = tr["ratios"]
        print("training, plugin over astroNN per interleaved pair: " + ", ".join(f"{r:.2f}" for r in ratios)
              + f"; best {max(ratios):.2f}, median {np.median(ratios):.2f}")
        one_thread = args.threads == 1
        goal = 4.0 if one_thread else 5.0
        print(f"target training >= {goal:g}x astroNN ({'one thread' if one_thread else 'default threads'}; median "
              f"pair ratio {np.median(ratios):.2f}): {'met' if np.median(ratios) >= goal else 'NOT met'}"
              f" (best pair {max(ratios):.2f}: {'met' if max(ratios) >= goal else 'NOT met'})")
        print(f"target training >= 3x astroNN: {'met' if rows[i_train][3] >= 3 else 'NOT met'}")
    if not args.skip_inference:
        best = max(rows[-1][1], rows[-3][1])
        print(f"target offset model >= 1e5 rows/s per core: {'met' if best >= 1e5 else 'NOT met'} "
              f"(best path {best:.0f} rows/s per core)")


if __name__ == "__main__":
    main()
