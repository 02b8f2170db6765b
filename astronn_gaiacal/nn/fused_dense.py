r"""MC dropout of a Dense/MCDropout chain with independent per-row masks, as one Numba kernel.

The offset calibration network (features -> Dense(32, tanh) -> MCDropout ->
Dense(16, tanh) -> MCDropout -> Dense(1)) is evaluated on every Gaia star.
Independent dropout masks for every star and pass cost, as TensorFlow
operations, several times the network's arithmetic (a ``passes x rows x
units`` mask tensor is drawn and read back); sharing each pass's masks by a
batch of stars (:func:`~astronn_gaiacal.nn.inference.mc_predict_shared_masks`)
folds them into the weights but correlates the MC noise of the stars of a batch.
Here every star is one iteration of a generated Numba kernel: the
deterministic first layer once, then the passes in blocks whose arrays are
``(units, passes)``, so that every inner loop (random numbers, masks, products,
activations) runs over the passes of a block in vector lanes, and at the end
the float64 mean and variance over the passes (two-pass moments); nothing of
size ``passes x rows`` is ever written.

Masks are drawn by a counter-based generator inside the kernel, so they
depend only on the call's 64-bit ``key``, the star's row number and the pass:

* the row's own key is ``mix(key + (first_row + row) * G2)`` (``mix`` the
  SplitMix64 output function, ``G2`` an odd constant); the 16-bit uniform
  integers of pass ``p`` are the four 16-bit quarters of
  ``mix(row_key + (p * W + w) * G)``, ``w < W`` (``G`` SplitMix64's
  increment), i.e. the SplitMix64 stream seeded with the row key, at a fixed
  position per pass and unit;
* a unit is dropped when its 16-bit integer is below ``round(rate * 2**16)``,
  kept units are scaled by ``1 / (1 - rate)``: the law of
  :func:`astronn_gaiacal.nn.fast.dropout`.

A star's result is therefore the same whatever batch, thread or call split it
falls in (``first_row`` places a slice of a larger array), and every star
draws from its own SplitMix64 stream.  ``tanh`` is Eigen's float32 rational approximation
(``ptanh_float``, the one TensorFlow's CPU kernels and XLA use; a [9/8]
minimax fit accurate to a few float32 ulps), inlined so that it vectorises:
Numba's ``np.tanh`` calls the scalar libm function, which would cost more than
the rest of the pass (and ``error_model="numpy"``: Python's zero-division check on ``/`` would keep LLVM
from vectorising the loop as well).
"""
import hashlib
import threading
from dataclasses import dataclass

import numpy as np

from . import fused
from .fast import keep_threshold

__all__ = ["DenseChainSpec", "chain_spec", "mc_dense_chain", "mc_predict_chain"]

#: Kernel source version: bump when the generated code changes.
_SOURCE_VERSION = 3
#: Activations the kernel computes itself.
ACTIVATIONS = ("linear", "relu", "tanh")

_HEADER = fused.KERNEL_HEADER.replace("astronn_gaiacal.nn.fused", "astronn_gaiacal.nn.fused_dense") + '''

@njit(inline="always", cache=True, fastmath=True, error_model="numpy")
def _tanh(x):
    # Eigen's ptanh_float (GenericPacketMathFunctions.h, FMA variant): [9/8] rational minimax on the clamped input
    c = np.float32(8.01773357391357422)
    x = c if x > c else x  # selects, not min/max (whose NaN checks keep LLVM from vectorising the loop)
    x = -c if x < -c else x
    x2 = x * x
    p = ((np.float32(1.394553628e-8) * x2 + np.float32(2.102733560e-5)) * x2
         + np.float32(3.520756727e-3)) * x2 + np.float32(1.340216100e-1)
    q = (((np.float32(8.015776984e-7) * x2 + np.float32(3.326951409e-4)) * x2 + np.float32(2.597254514e-2)) * x2
         + np.float32(4.673548340e-1)) * x2 + np.float32(1.0)
    return (x2 * x * p + x) / q
'''


@dataclass(frozen=True)
class DenseChainSpec:
    """Shapes of a chain ``Dense -> [MCDropout -> Dense] ...``.

    Attributes
    ----------
    widths : tuple of int
        Input width, then each Dense layer's units.
    activations : tuple of str
        Each Dense layer's activation (one of ``ACTIVATIONS``).
    dropout : tuple of bool
        Whether an active dropout precedes each Dense layer (the first never has one).
    """

    widths: tuple
    activations: tuple
    dropout: tuple

    def check(self):
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths must be >= 2 positive integers, got {self.widths}")
        if len(self.activations) != len(self.widths) - 1 or len(self.dropout) != len(self.activations):
            raise ValueError("one activation and one dropout flag per Dense layer")
        bad = [a for a in self.activations if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"activations {bad} are not computed by the kernel (only {ACTIVATIONS})")
        if self.dropout[0]:
            raise ValueError("the first Dense layer is the deterministic prefix: no dropout before it")

    @property
    def words(self):
        """64-bit random words per pass (four 16-bit draws each, one per unit of every dropout)."""
        return sum(-(-self.widths[i] // 4) for i, d in enumerate(self.dropout) if d)


def _act(name, expr):
    # a select, not max(): the NaN checks of Python's max keep LLVM from vectorising the loop
    relu = f"({expr} if {expr} > np.float32(0) else np.float32(0))"
    return {"linear": expr, "relu": relu, "tanh": f"_tanh({expr})"}[name]


#: Most passes computed together (the vector lanes of the kernel's inner loops); ``mc_num`` passes run in
#: ``ceil(mc_num / MAX_LANES)`` blocks of equal size.  The count is a run-time value on purpose: LLVM unrolls
#: a short constant loop into scalar code (Numba leaves SLP vectorisation off), but vectorises a variable one.
#: At mc_num=100 one block of 112 lanes ran faster than two of 64 (measured in docs/performance.rst).
MAX_LANES = 128
#: Block sizes are rounded up to a multiple of this (float32 lanes of an AVX-512 register): a partial vector
#: would run as scalar code for every weight.
VECTOR = 16


def _dense(lines, layer, spec, src, pad):
    """``a{layer+1}[j, :] = act(b[j] + sum_i src[i, :] * w{layer}[i, j])`` over the lanes."""
    d_in, d_out, dst = spec.widths[layer], spec.widths[layer + 1], f"a{layer + 1}"
    lines.append(f"""{pad}for j in range({d_out}):
{pad}    bj = b{layer}[j]
{pad}    for lane in range(nl):
{pad}        {dst}[j, lane] = bj
{pad}for i in range({d_in}):
{pad}    for j in range({d_out}):
{pad}        wij = w{layer}[i, j]
{pad}        for lane in range(nl):
{pad}            {dst}[j, lane] += {src}[i, lane] * wij""")
    if spec.activations[layer] != "linear":
        lines.append(f"""{pad}for j in range({d_out}):
{pad}    for lane in range(nl):
{pad}        {dst}[j, lane] = {_act(spec.activations[layer], f"{dst}[j, lane]")}""")


def kernel_source(spec):
    """Python source of the Numba kernel for ``spec`` (layer widths are compile-time constants).

    Per row: the first Dense layer once (scalar), then the passes in blocks of ``nl`` (at most
    :data:`MAX_LANES`), each array ``(units, nl)`` so that every inner loop runs over the passes of a block in vector
    lanes: the random words, the masks, the products (one multiply-add per weight and block), the
    activations.  The draws of pass ``p`` do not depend on the block it is computed in.
    """
    from .vector_width import source_line

    spec.check()
    simd = source_line()
    widths, n_layers, n_w = spec.widths, len(spec.activations), spec.words
    args = ", ".join(f"w{i}, b{i}" for i in range(n_layers))
    lines = [_HEADER.format(version=_SOURCE_VERSION), f'''

@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, error_model="numpy")
def rows(x, {args}, key, thr, scale, mc, nl, first_row, mean, var, row0, row1):
    """Mean and variance over ``mc`` passes of rows ``row0:row1`` of ``x`` (row ``r`` is star ``first_row + r``);
    ``thr[w]``, ``scale[w]``: threshold and keep scale of the dropout that random word ``w`` of a pass serves."""
{simd}    gamma = np.uint64(0x9E3779B97F4A7C15)
    gamma2 = np.uint64(0xD1B54A32D192ED03)
    mask = np.empty(({4 * max(n_w, 1)}, nl), np.float32)
    outs = np.empty((mc + nl, {widths[-1]}), np.float64)
    h1 = np.empty({widths[1]}, np.float32)''']
    for layer in range(1, n_layers):
        lines.append(f"    v{layer} = np.empty(({widths[layer]}, nl), np.float32)")
        lines.append(f"    a{layer + 1} = np.empty(({widths[layer + 1]}, nl), np.float32)")
    lines.append(f'''    for row in range(row0, row1):
        for j in range({widths[1]}):
            s = b0[j]
            for i in range({widths[0]}):
                s += x[row, i] * w0[i, j]
            h1[j] = {_act(spec.activations[0], "s")}
        row_key = _mix64(key + np.uint64(first_row + row) * gamma2)
        for p0 in range(0, mc, nl):''')
    if n_w:
        lines.append(f'''            for w in range({n_w}):
                t = thr[w]
                keep = scale[w]
                for lane in range(nl):
                    c = np.uint64(p0 + lane) * np.uint64({n_w}) + np.uint64(w)
                    z = _mix64(row_key + c * gamma)
                    mask[4 * w, lane] = keep if (z & np.uint64(0xFFFF)) >= t else np.float32(0)
                    mask[4 * w + 1, lane] = keep if ((z >> np.uint64(16)) & np.uint64(0xFFFF)) >= t else np.float32(0)
                    mask[4 * w + 2, lane] = keep if ((z >> np.uint64(32)) & np.uint64(0xFFFF)) >= t else np.float32(0)
                    mask[4 * w + 3, lane] = keep if (z >> np.uint64(48)) >= t else np.float32(0)''')
    offset, pad = 0, " " * 12
    for layer in range(1, n_layers):
        d_in = widths[layer]
        src = "h1[i]" if layer == 1 else f"a{layer}[i, lane]"
        if spec.dropout[layer]:
            lines.append(f"""{pad}for i in range({d_in}):
{pad}    for lane in range(nl):
{pad}        v{layer}[i, lane] = {src} * mask[{4 * offset} + i, lane]""")
            offset += -(-d_in // 4)
        else:
            lines.append(f"""{pad}for i in range({d_in}):
{pad}    for lane in range(nl):
{pad}        v{layer}[i, lane] = {src}""")
        _dense(lines, layer, spec, f"v{layer}", pad)
    last = f"a{n_layers}[j, lane]" if n_layers > 1 else "h1[j]"
    lines.append(f'''            for lane in range(nl):
                for j in range({widths[-1]}):
                    outs[p0 + lane, j] = {last}
        for j in range({widths[-1]}):
            s = 0.0
            for p in range(mc):
                s += outs[p, j]
            m = s / mc
            s = 0.0
            for p in range(mc):
                d = outs[p, j] - m
                s += d * d
            mean[row, j] = m
            var[row, j] = s / mc''')
    return "\n".join(lines) + "\n"


def chain_spec(chain):
    """The :class:`DenseChainSpec` of ``chain`` (:func:`~astronn_gaiacal.nn.inference.dense_chain`'s list of
    ``(kernel, bias, activation, rate)``), or None when an activation is not one the kernel computes."""
    acts = tuple(getattr(act, "__name__", None) for _, _, act, _ in chain)
    if any(a not in ACTIVATIONS for a in acts):
        return None
    widths = (int(chain[0][0].shape[0]),) + tuple(int(k.shape[1]) for k, _, _, _ in chain)
    return DenseChainSpec(widths, acts, tuple(float(rate) > 0 for _, _, _, rate in chain))


_KERNELS = {}
_LOCK = threading.Lock()


def _module_name(spec):
    from .vector_width import module_suffix

    digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:12]
    return f"astronn_gaiacal_fused_dense_v{_SOURCE_VERSION}_{'x'.join(map(str, spec.widths))}_{digest}{module_suffix()}"


def load_kernel(spec):
    """The compiled ``rows`` kernel for ``spec`` (generated and compiled once per machine, loaded once per process)."""
    with _LOCK:
        if spec not in _KERNELS:
            _KERNELS[spec] = fused.load_module(_module_name(spec), kernel_source(spec)).rows
        return _KERNELS[spec]


def mc_dense_chain(x, weights, spec, rates, key, mc_num, first_row=0, threads=None):
    """Mean and variance over ``mc_num`` MC-dropout passes of a Dense chain, masks independent per row and pass.

    Parameters
    ----------
    x : ndarray, shape (N, widths[0])
        Inputs (converted to float32).
    weights : list of (kernel, bias)
        Each Dense layer's ``(d_in, d_out)`` kernel and ``(d_out,)`` bias (None: zeros).
    spec : DenseChainSpec
    rates : sequence of float
        Dropout rate before each Dense layer (0 where ``spec.dropout`` is False).
    key : int
        64-bit key of the masks (one draw of the caller's generator).
    mc_num : int
        Passes per row.
    first_row : int
        Star number of ``x[0]``: row ``r`` gets the masks of star ``first_row + r``, so a slice of a larger
        array evaluated on its own gives the numbers of the whole.
    threads : int, optional
        Worker threads, rows split between them (default: ``nn.fused.kernel_threads()``);
        the result does not depend on it.

    Returns
    -------
    mean, var : ndarray, shape (N, widths[-1]), float64
    """
    spec.check()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != spec.widths[0]:
        raise ValueError(f"x must have shape (N, {spec.widths[0]}), got {x.shape}")
    if int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    if int(first_row) < 0:
        raise ValueError(f"first_row must be >= 0, got {first_row!r}")
    arrays = []
    for i, (kernel, bias) in enumerate(weights):
        kernel = np.ascontiguousarray(kernel, dtype=np.float32)
        if kernel.shape != (spec.widths[i], spec.widths[i + 1]):
            raise ValueError(f"kernel {i} must have shape {(spec.widths[i], spec.widths[i + 1])}, got {kernel.shape}")
        bias = np.zeros(kernel.shape[1], np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
        arrays += [kernel, bias.reshape(kernel.shape[1])]
    # the threshold and keep scale of every random word of a pass (four units each, layer by layer)
    per_word = [(keep_threshold(r), 1.0 / (1.0 - float(r)))
                for i, (r, d) in enumerate(zip(rates, spec.dropout)) if d for _ in range(-(-spec.widths[i] // 4))]
    thr = np.array([t for t, _ in per_word] or [0], np.uint64)
    scale = np.array([k for _, k in per_word] or [1], np.float32)
    n, k = x.shape[0], spec.widths[-1]
    mean, var = np.empty((n, k)), np.empty((n, k))
    if n == 0:
        return mean, var
    run = load_kernel(spec)
    mc_num = int(mc_num)
    blocks = -(-mc_num // MAX_LANES)
    lanes = VECTOR * -(-mc_num // (blocks * VECTOR))  # equal blocks, whole vectors: 100 passes -> 1 x 112
    args = (x, *arrays, np.uint64(int(key) % 2**64), thr, scale, mc_num, lanes, int(first_row), mean, var)
    threads = min(fused.kernel_threads() if threads is None else int(threads), n)
    if threads <= 1:
        run(*args, 0, n)
        return mean, var
    edges = np.linspace(0, n, threads + 1).astype(int)
    futures = [fused.thread_pool().submit(run, *args, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    for fut in futures:
        fut.result()
    return mean, var


#: Rows per kernel call of :func:`mc_predict_chain` when no batch size is given (the progress bar's step).
DEFAULT_BATCH = 65536


def mc_predict_chain(chain, spec, x, mc_num, key, batch_size=None, progress=False, desc="MC dropout"):
    """:func:`~astronn_gaiacal.nn.inference.mc_predict` of a Dense/MCDropout chain, streamed in batches.

    Parameters
    ----------
    chain : list
        :func:`~astronn_gaiacal.nn.inference.dense_chain` of the model.
    spec : DenseChainSpec
        :func:`chain_spec` of ``chain``.
    x : ndarray, shape (N, widths[0])
    mc_num : int
    key : int
        64-bit key of the masks (one draw of the caller's generator).
    batch_size : int, optional
        Rows per kernel call (default ``DEFAULT_BATCH``).  Row ``i`` of ``x`` gets the masks of star ``i``
        whatever the batch size: the results do not depend on it.
    progress : bool
        A tqdm bar.
    desc : str
        Its label.

    Returns
    -------
    mean, var : ndarray, shape (N, widths[-1]), float64
    """
    from tqdm.auto import tqdm

    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size
                                   or int(batch_size) < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != spec.widths[0]:
        raise ValueError(f"x must have shape (N, {spec.widths[0]}), got {x.shape}")
    n, k = x.shape[0], spec.widths[-1]
    weights = [(kernel.numpy(), None if bias is None else bias.numpy()) for kernel, bias, _, _ in chain]
    rates = [rate for *_, rate in chain]
    step = int(batch_size or DEFAULT_BATCH)
    mean, var = np.empty((n, k)), np.empty((n, k))
    with tqdm(total=n, unit="star", desc=desc, disable=not progress, leave=False) as bar:
        bar.set_postfix({"mc_num": int(mc_num)})
        for start in range(0, n, step):
            stop = min(n, start + step)
            mean[start:stop], var[start:stop] = mc_dense_chain(x[start:stop], weights, spec, rates, key, mc_num,
                                                               first_row=start)
            bar.update(stop - start)
    return mean, var
