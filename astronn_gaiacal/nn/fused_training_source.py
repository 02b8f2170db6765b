"""Source of the generated Numba kernels of :mod:`astronn_gaiacal.nn.fused_training` (internal).

:func:`kernel_source` writes, for one :class:`ConvStackSpec`, the forward and backward kernels
of the convolution stack with its taps, channels and pixel counts unrolled as constants.
"""
from dataclasses import dataclass

from .fused import KERNEL_HEADER, check_positive

__all__ = ["ConvStackSpec", "SOURCE_VERSION", "kernel_source"]

#: Generated source version: bump when the code changes.
SOURCE_VERSION = 4


@dataclass(frozen=True)
class ConvStackSpec:
    """Shapes of a Conv1D -> ReLU -> dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout stack.

    Both convolutions are stride 1, ``'same'``-padded, with kernel size ``kernel_size``.

    Attributes
    ----------
    length : int
        Input pixels.
    kernel_size, in_channels, filters1, filters2 : int
    pool : int
        Pool size (= stride); the output has ``(length // pool) * filters2`` values per star.
    """

    length: int
    kernel_size: int
    in_channels: int
    filters1: int
    filters2: int
    pool: int

    @property
    def left(self):
        """Left zero padding of a ``'same'`` convolution."""
        return (self.kernel_size - 1) // 2

    @property
    def padded(self):
        """Padded pixels: ``length + kernel_size - 1``."""
        return self.length + self.kernel_size - 1

    @property
    def pooled(self):
        return self.length // self.pool

    @property
    def outputs(self):
        """Output values per star."""
        return self.pooled * self.filters2

    @property
    def words(self):
        """64-bit random words per star: first mask, then second mask (four 16-bit numbers each)."""
        return (self.filters1 * self.length + 3) // 4, (self.outputs + 3) // 4

    def check(self):
        check_positive(self, ("length", "kernel_size", "in_channels", "filters1", "filters2", "pool"))
        if self.pooled < 1:
            raise ValueError(f"pool {self.pool} is longer than the spectrum ({self.length})")


def _pool_argmax(p, value):
    """Branch-free maximum ``best`` and its position ``q`` (int8, first of equals) of ``p`` values
    ``value.format(r)``, as a tournament (LLVM vectorises it over the pooled pixels)."""
    lines = [f"            pv_{r} = {value.format(r)}" for r in range(p)]
    level = [(f"pv_{r}", f"np.int8({r})") for r in range(p)]
    count = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (va, qa), (vb, qb) = level[i], level[i + 1]
            m, vv, qq = f"pm{count}", f"pv{count}", f"pq{count}"
            lines += [f"            {m} = {vb} > {va}", f"            {vv} = {vb} if {m} else {va}",
                      f"            {qq} = {qb} if {m} else {qa}"]
            nxt.append((vv, qq))
            count += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    lines += [f"            best = {level[0][0]}", f"            q = {level[0][1]}"]
    return "\n".join(lines)


def _weight_gradient(gw, gb, grad, act, length, k, c_in, c_out):
    """Lines adding ``sum_i grad[o, i] * act[c, i + t]`` to ``gw[t, c, o]`` and ``sum_i grad[o, i]`` to ``gb[o]``
    (``grad`` and ``act`` are format strings in ``o``, ``c``, ``t``): one vectorised loop per (o, c)."""
    lines = []
    for o in range(c_out):
        lines.append("        sb = zero")
        for c in range(c_in):
            lines.append("        " + ", ".join(f"s{t}" for t in range(k)) + " = " + ", ".join(["zero"] * k))
            lines.append(f"        for i in range({length}):")
            lines.append(f"            gv = {grad.format(o=o)}")
            lines += [f"            s{t} += gv * {act.format(c=c, t=t)}" for t in range(k)]
            if c == 0:
                lines.append("            sb += gv")
            lines += [f"        {gw}[{t}, {c}, {o}] += s{t}" for t in range(k)]
        lines.append(f"        {gb}[{o}] += sb")
    return lines


def _sum(terms):
    return " + ".join(terms) if terms else "np.float32(0)"


def kernel_source(spec):
    """Python source of the forward and backward Numba kernels for ``spec``."""
    from .vector_width import source_line

    spec.check()
    simd = source_line()
    L, k, c0n, c1n, c2n, p = spec.length, spec.kernel_size, spec.in_channels, spec.filters1, spec.filters2, spec.pool
    left, n, padded, outputs = spec.left, spec.pooled, spec.padded, spec.outputs
    w_in, w_out = spec.words
    wide = L + 2 * (k - 1)  # padded length of the second convolution's output gradient
    w1 = [f"w1_{t}_{c}_{o}" for t in range(k) for c in range(c0n) for o in range(c1n)]
    w2 = [f"w2_{t}_{c}_{o}" for t in range(k) for c in range(c1n) for o in range(c2n)]
    load1 = [f"    {name} = w1[{name[3:].replace('_', ', ')}]" for name in w1]
    load1 += [f"    bias1_{o} = b1[{o}]" for o in range(c1n)]
    load2 = [f"    {name} = w2[{name[3:].replace('_', ', ')}]" for name in w2]
    g = [f'''

@njit(cache=True, nogil=True)
def masks(key, thr1, thr2, n_rows):
    """Keep-masks of rows ``0:n_rows``: ``(n_rows, {c1n}, {L})`` after the first convolution and
    ``(n_rows, {c2n}, {n})`` (channel, pooled pixel) after the flattening."""
    m1 = np.empty((n_rows, {c1n}, {L}), np.bool_)
    m2 = np.empty((n_rows, {c2n}, {n}), np.bool_)
    r1 = np.empty({w_in}, np.uint64)
    r2 = np.empty({w_out}, np.uint64)
    u1 = r1.view(np.uint16)
    u2 = r2.view(np.uint16)
    for b in range(n_rows):
        base = np.uint64(b) * np.uint64({w_in + w_out})
        _words(r1, key, base)
        _words(r2, key, base + np.uint64({w_in}))
        for c in range({c1n}):
            for i in range({L}):
                m1[b, c, i] = u1[c * {L} + i] >= thr1
        for o in range({c2n}):
            for j in range({n}):
                m2[b, o, j] = u2[o * {n} + j] >= thr2
    return m1, m2


@njit(inline="always", cache=True, fastmath=True, boundscheck=False)
def _first(xb, xpad, hb, u1, thr1, scale1, {", ".join(w1)}, {", ".join(f"bias1_{o}" for o in range(c1n))}):
    """Star ``xb`` ({L}, {c0n}) -> padded first-dropout output ``hb`` ({c1n}, {padded})."""
    zero = np.float32(0)
    for c in range({c0n}):
        for i in range({L}):
            xpad[c, i + {left}] = xb[i, c]
''']
    for o in range(c1n):
        terms = [f"w1_{t}_{c}_{o} * xpad[{c}, i + {t}]" for t in range(k) for c in range(c0n)]
        g.append(f'''    for i in range({L}):
        a = bias1_{o} + {_sum(terms)}
        hb[{o}, i + {left}] = a * scale1 if (a > zero and u1[{o * L} + i] >= thr1) else zero''')
    w1_args = ", ".join(w1 + [f"bias1_{o}" for o in range(c1n)])

    g.append(f'''

@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def forward(x, w1, b1, w2, b2, out, arg, key, thr1, scale1, thr2, scale2, row0, row1):
    """Rows ``row0:row1`` of ``x`` (B, {L}, {c0n}); writes ``out`` (B, {outputs}) and ``arg`` (B, {c2n}, {n}),
    the position of each pool maximum in its window or -1 where no gradient flows."""
{simd}''')
    g += load1 + load2 + [f"    bias2_{o} = b2[{o}]" for o in range(c2n)]
    g.append(f'''    zero = np.float32(0)
    xpad = np.zeros(({c0n}, {padded}), np.float32)
    hb = np.zeros(({c1n}, {padded}), np.float32)
    r1 = np.empty({w_in}, np.uint64)
    r2 = np.empty({w_out}, np.uint64)
    u1 = r1.view(np.uint16)
    u2 = r2.view(np.uint16)
    y = np.empty({n * p}, np.float32)
    pooled = np.empty(({c2n}, {n}), np.float32)
    for b in range(row0, row1):
        base = np.uint64(b) * np.uint64({w_in + w_out})
        _words(r1, key, base)
        _words(r2, key, base + np.uint64({w_in}))
        _first(x[b], xpad, hb, u1, thr1, scale1, {w1_args})
        ab = arg[b]''')
    for o in range(c2n):
        terms = [f"w2_{t}_{c}_{o} * hb[{c}, i + {t}]" for t in range(k) for c in range(c1n)]
        g.append(f'''        for i in range({n * p}):
            y[i] = bias2_{o} + {_sum(terms)}
        for j in range({n}):''')
        g.append(_pool_argmax(p, f"y[{p} * j + {{}}]"))
        g.append(f'''            keep = (best > zero) & (u2[{o * n} + j] >= thr2)
            pooled[{o}, j] = best * scale2 if keep else zero
            ab[{o}, j] = q if keep else np.int8(-1)''')
    g.append(f'''        ob = out[b]
        for j in range({n}):''')
    for o in range(c2n):
        g.append(f"            ob[j * {c2n} + {o}] = pooled[{o}, j]")

    g.append(f'''

@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def backward(x, arg, gout, w1, b1, w2, key, thr1, scale1, scale2, gw1, gb1, gw2, gb2, row0, row1):
    """Rows ``row0:row1``: add the kernel and bias gradients to the float64 ``gw1`` ({k}, {c0n}, {c1n}),
    ``gb1`` ({c1n},), ``gw2`` ({k}, {c1n}, {c2n}), ``gb2`` ({c2n},).  Recomputes the first convolution."""
{simd}''')
    g += load1 + load2
    g.append(f'''    zero = np.float32(0)
    xpad = np.zeros(({c0n}, {padded}), np.float32)
    hb = np.zeros(({c1n}, {padded}), np.float32)
    r1 = np.empty({w_in}, np.uint64)
    u1 = r1.view(np.uint16)
    gy = np.zeros(({c2n}, {wide}), np.float32)
    ga = np.empty(({c1n}, {L}), np.float32)
    for b in range(row0, row1):
        _words(r1, key, np.uint64(b) * np.uint64({w_in + w_out}))
        _first(x[b], xpad, hb, u1, thr1, scale1, {w1_args})
        ab = arg[b]
        gb = gout[b]''')
    for o in range(c2n):
        g.append(f'''        for j in range({n}):
            q = ab[{o}, j]
            gv = gb[j * {c2n} + {o}] * scale2''')
        for r in range(p):
            g.append(f"            gy[{o}, {k - 1 + r} + {p} * j] = gv if q == {r} else zero")
    # second kernel and bias: gw2[t, c, o] = sum_i gy[o, k - 1 + i] * hb[c, i + t]
    g += _weight_gradient("gw2", "gb2", "gy[{o}, %d + i]" % (k - 1), "hb[{c}, i + {t}]", n * p, k, c1n, c2n)
    # gradient at the first dropout's output, through the dropout and ReLU
    for c in range(c1n):
        terms = [f"w2_{t}_{c}_{o} * gy[{o}, m + {left + k - 1 - t}]" for t in range(k) for o in range(c2n)]
        g.append(f'''        for m in range({L}):
            v = {_sum(terms)}
            ga[{c}, m] = v * scale1 if hb[{c}, m + {left}] > zero else zero''')
    # first kernel and bias: gw1[t, c0, c] = sum_m ga[c, m] * xpad[c0, m + t]
    g += _weight_gradient("gw1", "gb1", "ga[{o}, i]", "xpad[{c}, i + {t}]", L, k, c0n, c1n)
    return KERNEL_HEADER.format(version=f"training {SOURCE_VERSION}") + "\n".join(g) + "\n"
