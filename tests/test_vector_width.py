"""512-bit vectors for the generated kernels: the attribute, its scope and the CPU check."""
import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402
from numba.core import config  # noqa: E402

from astronn_gaiacal.nn import fused, fused_dense, fused_training_source, vector_width  # noqa: E402
from astronn_gaiacal.nn.vector_width import ATTRIBUTE, prefer_wide_vectors  # noqa: E402


@njit(fastmath=True)
def _wide(a, b, out):
    prefer_wide_vectors()
    for i in range(a.size):
        out[i] += a[i] * b[i]


@njit(fastmath=True)
def _plain(a, b, out):
    for i in range(a.size):
        out[i] += a[i] * b[i]


def _compiled(fn):
    a = np.arange(1000, dtype=np.float32)
    out = np.ones(1000, np.float32)
    fn(a, a, out)
    np.testing.assert_array_equal(out, 1 + a * a)  # the call changes nothing at run time
    return list(fn.inspect_llvm().values())[0], list(fn.inspect_asm().values())[0]


def test_the_attribute_goes_on_the_calling_function_only():
    wide_ir, wide_asm = _compiled(_wide)
    plain_ir, plain_asm = _compiled(_plain)
    assert ATTRIBUTE in wide_ir
    assert ATTRIBUTE not in plain_ir
    if vector_width.wide_vectors():  # an AVX-512 CPU: LLVM now uses the 512-bit registers
        assert "zmm" in wide_asm


@pytest.mark.parametrize("features, wide", [("+avx2,+fma,+avx512f,+avx512bw", True), ("+avx2,+fma,-avx512f", False),
                                            ("+sse2", False)])
def test_wide_vectors_follows_numbas_cpu_features(monkeypatch, features, wide):
    monkeypatch.setattr(config, "CPU_FEATURES", features)
    assert vector_width.wide_vectors() is wide
    assert (vector_width.source_line() != "") is wide


@pytest.mark.parametrize("wide", [True, False])
def test_every_generated_kernel_asks_for_them_where_the_cpu_has_them(monkeypatch, wide):
    monkeypatch.setattr(vector_width, "wide_vectors", lambda: wide)
    sources = [fused.kernel_source(fused.ConvPoolSpec(64, 8, 2, 4, 3, 64, 4, True)),
               fused_dense.kernel_source(fused_dense.DenseChainSpec((3, 8, 1), ("tanh", "linear"), (False, True))),
               fused_training_source.kernel_source(fused_training_source.ConvStackSpec(64, 8, 1, 2, 4, 4))]
    calls = [s.count("prefer_wide_vectors()") for s in sources]
    assert calls == ([1, 1, 2] if wide else [0, 0, 0])  # the training source has a forward and a backward kernel
    for source in sources:
        compile(source, "<kernel>", "exec")  # still valid Python either way


def test_machines_with_and_without_avx512_keep_separate_kernel_files(monkeypatch):
    from astronn_gaiacal.nn import fused_training

    specs = [(fused._module_name, fused.ConvPoolSpec(64, 8, 2, 4, 3, 64, 4, True)),
             (fused_dense._module_name, fused_dense.DenseChainSpec((3, 8, 1), ("tanh", "linear"), (False, True))),
             (fused_training._module_name, fused_training_source.ConvStackSpec(64, 8, 1, 2, 4, 4))]
    for module_name, spec in specs:
        names = {}
        for wide in (True, False):
            monkeypatch.setattr(vector_width, "wide_vectors", lambda wide=wide: wide)
            names[wide] = module_name(spec)
        assert names[True] == names[False] + "_w512"
