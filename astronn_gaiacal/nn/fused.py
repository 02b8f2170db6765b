r"""One fused CPU kernel for the costly stretch of an MC-dropout pass: dropout -> Conv1D -> pool -> dropout.

In the paper's network every stochastic pass runs

    MCDropout -> Conv1D (few channels) -> ReLU -> MaxPooling1D -> Flatten -> MCDropout

on a ``(7514, 2)`` activation.  As separate TensorFlow operations this stretch
writes and reads several ``passes x 7514 x 4`` tensors and draws 22,500 random
numbers per pass, which cost ten times the dense layer's matrix product.  Here
the whole stretch is one Numba kernel per pass that stays in the core's cache:
it draws the masks, applies the first dropout, convolves, applies the
activation, pools and applies the second dropout, writing only the flattened
result (the input of the big dense layer).

The arithmetic is the layers' own (float32, the same weights; the dropout-free
part equals ``tf.nn.conv1d`` + ``relu`` + max pooling to float32 rounding).
The dropout masks follow the law of :func:`astronn_gaiacal.nn.fast.dropout`:
a value is dropped when a 16-bit uniform integer is below
``round(rate * 2**16)``, kept values are scaled by ``1 / (1 - rate)``.  The
16-bit numbers come from the SplitMix64 output function applied to a counter
(four per 64-bit value), keyed by one 64-bit draw of the caller's TensorFlow
generator per call, so ``tf.random.set_seed`` makes results reproducible.

The kernel is generated for the layer shapes (kernel size, channels, pool size,
spectrum length are compile-time constants, which lets LLVM vectorise it), written
to a cache folder (:func:`kernel_cache_dir`) and compiled by Numba once per
machine (about 10 s; later processes load it in under a second).

Only monotone non-decreasing activations that commute with max pooling are
fused (ReLU and linear), so ``act(max(x)) == max(act(x))`` holds exactly.
"""
import importlib.util
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["ConvPoolSpec", "kernel_cache_dir", "mc_conv_pool", "phase_split", "keep_threshold"]

_RATE_BITS = 16
#: Kernel source version: bump when the generated code changes.
_SOURCE_VERSION = 1
CACHE_ENV = "ASTRONN_GAIACAL_KERNEL_CACHE"


def keep_threshold(rate):
    """16-bit threshold: a value is kept when its uniform integer is >= this (drop probability ``thr / 2**16``)."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
    return int(round(rate * 2**_RATE_BITS))


@dataclass(frozen=True)
class ConvPoolSpec:
    """Shapes of a fused dropout -> Conv1D -> activation -> MaxPooling1D -> Flatten -> dropout stretch.

    Attributes
    ----------
    length : int
        Input pixels.
    kernel_size, in_channels, filters : int
    left : int
        Zero padding on the left (``(kernel_size - 1) // 2`` for ``'same'``, 0 for ``'valid'``).
    out_length : int
        Convolution output pixels (``length`` for ``'same'``, ``length - kernel_size + 1`` for ``'valid'``).
    pool : int
        Pool size (= stride).
    relu : bool
        ReLU (else linear) activation.
    """

    length: int
    kernel_size: int
    in_channels: int
    filters: int
    left: int
    out_length: int
    pool: int
    relu: bool

    @property
    def pooled(self):
        """Pooled pixels ``n``; the output has ``n * filters`` values per pass."""
        return self.out_length // self.pool

    @property
    def lead(self):
        """Phase-split columns of left padding."""
        return -(-self.left // self.pool)

    @property
    def columns(self):
        """Phase-split columns per (channel, phase) row, padding included."""
        reach = (self.pool - 1 - self.left + self.kernel_size - 1) // self.pool
        return self.pooled + self.lead + reach + 1

    def check(self):
        for name in ("length", "kernel_size", "in_channels", "filters", "out_length", "pool"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.pooled < 1:
            raise ValueError(f"pool {self.pool} is longer than the convolution output ({self.out_length})")
        if not 0 <= self.left < self.kernel_size:
            raise ValueError(f"left padding must be in [0, kernel_size), got {self.left}")


def phase_split(x, spec):
    """``(B, length, C)`` -> ``(B, C * pool, columns)``: row ``c * pool + r``, column ``j`` holds pixel
    ``pool * (j - lead) + r`` of channel ``c`` (zero outside the spectrum)."""
    x = np.asarray(x, dtype=np.float32)
    b = x.shape[0]
    p, lead, cols = spec.pool, spec.lead, spec.columns
    xs = np.zeros((b, spec.in_channels * p, cols), np.float32)
    for r in range(p):
        # pixels r, r + p, ... go to columns lead, lead + 1, ...
        src = x[:, r::p, :]
        m = min(src.shape[1], cols - lead)
        xs[:, r::p, lead:lead + m] = np.transpose(src[:, :m, :], (0, 2, 1))
    return xs


_HEADER = '''"""Generated by astronn_gaiacal.nn.fused (source version {version}); safe to delete."""
import numpy as np
from numba import njit


@njit(inline="always", cache=True)
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True)
def _uniform16(buf, key, base):
    gamma = np.uint64(0x9E3779B97F4A7C15)
    for w in range(buf.shape[0] // 4):
        z = _mix64(key + (base + np.uint64(w)) * gamma)
        buf[4 * w] = np.uint16(z & np.uint64(0xFFFF))
        buf[4 * w + 1] = np.uint16((z >> np.uint64(16)) & np.uint64(0xFFFF))
        buf[4 * w + 2] = np.uint16((z >> np.uint64(32)) & np.uint64(0xFFFF))
        buf[4 * w + 3] = np.uint16(z >> np.uint64(48))
'''


def kernel_source(spec):
    """Python source of the Numba kernel for ``spec`` (loops over the kernel taps, channels and pool unrolled)."""
    spec.check()
    k, cin, cout, p, left = spec.kernel_size, spec.in_channels, spec.filters, spec.pool, spec.left
    rows, cols, n, lead = cin * p, spec.columns, spec.pooled, spec.lead
    lines = [_HEADER.format(version=_SOURCE_VERSION), f'''

@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def rows(xs, kernel, bias, out, key, thr_in, scale_in, thr_out, scale_out, row0, row1):
    """Rows ``row0:row1`` of ``out`` (row = pass * B + star); ``xs`` from phase_split."""
    n_in = xs.shape[0]
    words_in = ({rows * cols} + 3) // 4
    words_out = ({n * cout} + 3) // 4
    m = np.empty(({rows}, {cols}), np.float32)
    u_in = np.empty(4 * words_in, np.uint16)
    u_out = np.empty(4 * words_out, np.uint16)
    for row in range(row0, row1):
        b = row % n_in
        base = np.uint64(row) * np.uint64(words_in + words_out)
        _uniform16(u_in, key, base)
        _uniform16(u_out, key, base + np.uint64(words_in))
        for i in range({rows}):
            for j in range({cols}):
                v = xs[b, i, j] * scale_in
                m[i, j] = v if u_in[i * {cols} + j] >= thr_in else np.float32(0)
        o_row = out[row]
        for j in range({n}):''']
    for o in range(cout):
        for q in range(p):
            terms = []
            for t in range(k):
                u = q - left + t
                r, d = u % p, u // p
                for c in range(cin):
                    terms.append(f"kernel[{t}, {c}, {o}] * m[{c * p + r}, j + {d + lead}]")
            lines.append(f"            a{q} = bias[{o}] + " + " + ".join(terms))
        best = "a0"
        for q in range(1, p):
            best = f"max({best}, a{q})"
        lines.append(f"            v = {best}")
        if spec.relu:
            lines.append("            v = max(v, np.float32(0))")
        lines.append(f"            o_row[j * {cout} + {o}] = v * scale_out if u_out[j * {cout} + {o}] >= thr_out "
                     "else np.float32(0)")
    return "\n".join(lines) + "\n"


def kernel_cache_dir():
    """Folder of the generated kernels: ``$ASTRONN_GAIACAL_KERNEL_CACHE``, else astropy's cache folder
    (``~/.astropy/cache/astronn_gaiacal/kernels``), else a per-user temporary folder."""
    env = os.environ.get(CACHE_ENV)
    candidates = [env] if env else []
    try:
        from astropy.config import get_cache_dir

        candidates.append(os.path.join(get_cache_dir(), "astronn_gaiacal", "kernels"))
    except Exception:  # astropy cannot make its cache folder (read-only home)
        pass
    candidates.append(os.path.join(tempfile.gettempdir(), f"astronn_gaiacal_kernels_{os.getuid()}"))
    for folder in candidates:
        try:
            os.makedirs(folder, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    raise OSError(f"no writable folder for the compiled kernels (tried {candidates}); set {CACHE_ENV}")


_KERNELS = {}
_LOCK = threading.Lock()


def _module_name(spec):
    return (f"astronn_gaiacal_fused_v{_SOURCE_VERSION}_L{spec.length}_k{spec.kernel_size}_c{spec.in_channels}"
            f"_f{spec.filters}_l{spec.left}_o{spec.out_length}_p{spec.pool}_{'relu' if spec.relu else 'linear'}")


def load_kernel(spec):
    """The compiled ``rows`` kernel for ``spec`` (generated, written atomically and imported once per process)."""
    with _LOCK:
        if spec in _KERNELS:
            return _KERNELS[spec]
        name = _module_name(spec)
        path = os.path.join(kernel_cache_dir(), name + ".py")
        source = kernel_source(spec)
        try:
            with open(path) as f:
                current = f.read() == source
        except OSError:
            current = False
        if not current:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".py.partial")
            with os.fdopen(fd, "w") as f:
                f.write(source)
            os.replace(tmp, path)
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # Numba's cache re-imports the module by name
        module_spec.loader.exec_module(module)
        _KERNELS[spec] = module.rows
        return module.rows


_POOL = []


def _threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _pool():
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(_threads(), thread_name_prefix="astronn_gaiacal_fused"))
    return _POOL[0]


def mc_conv_pool(x, kernel, bias, spec, key, reps, rate_in, rate_out, threads=None):
    """``reps`` stochastic passes of dropout -> Conv1D -> activation -> MaxPooling1D -> Flatten -> dropout.

    Parameters
    ----------
    x : ndarray, shape (B, length, in_channels)
        Input of the first dropout.
    kernel : ndarray, shape (kernel_size, in_channels, filters)
    bias : ndarray, shape (filters,)
    spec : ConvPoolSpec
    key : int
        64-bit key of this call's random numbers.
    reps : int
        Passes; output row ``p * B + b`` is pass ``p`` of input ``b`` (``tf.tile`` order).
    rate_in, rate_out : float
        Dropout rates before the convolution and after the flattening (0: none).
    threads : int, optional
        Worker threads (default: the cores this process may use).

    Returns
    -------
    ndarray, shape (reps * B, pooled * filters), float32
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (spec.length, spec.in_channels):
        raise ValueError(f"x must have shape (B, {spec.length}, {spec.in_channels}), got {x.shape}")
    kernel = np.ascontiguousarray(kernel, dtype=np.float32)
    if kernel.shape != (spec.kernel_size, spec.in_channels, spec.filters):
        raise ValueError(f"kernel must have shape {(spec.kernel_size, spec.in_channels, spec.filters)}, "
                         f"got {kernel.shape}")
    bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.float32), (spec.filters,)))
    n_rows = int(reps) * x.shape[0]
    out = np.empty((n_rows, spec.pooled * spec.filters), np.float32)
    if n_rows == 0:
        return out
    run = load_kernel(spec)
    xs = phase_split(x, spec)
    args = (xs, kernel, bias, out, np.uint64(int(key) % 2**64), np.uint16(keep_threshold(rate_in)),
            np.float32(1.0 / (1.0 - rate_in)), np.uint16(keep_threshold(rate_out)), np.float32(1.0 / (1.0 - rate_out)))
    threads = min(_threads() if threads is None else int(threads), n_rows)
    if threads <= 1:
        run(*args, 0, n_rows)
        return out
    edges = np.linspace(0, n_rows, threads + 1).astype(int)
    futures = [_pool().submit(run, *args, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    for fut in futures:
        fut.result()
    return out
