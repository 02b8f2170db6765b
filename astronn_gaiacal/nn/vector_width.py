"""512-bit vectors for the generated Numba kernels, on CPUs that have them.

LLVM vectorises with 256-bit registers on most AVX-512 CPUs unless a function asks for
more (its tuning assumes wide instructions lower the clock).  The fused kernels
(:mod:`~astronn_gaiacal.nn.fused`, :mod:`~astronn_gaiacal.nn.fused_dense`,
:mod:`~astronn_gaiacal.nn.fused_training`) spend their time in long float32 loops that
gain from twice the lanes, so their generated source calls ``prefer_wide_vectors()``
(a Numba intrinsic) first where the CPU has AVX-512 (:func:`wide_vectors`).  It sets LLVM's ``"prefer-vector-width"="512"`` attribute on the calling function
only, like clang's ``-mprefer-vector-width=512``: other Numba code in the process
keeps Numba's settings.  Imported only by the generated kernels (it imports Numba);
Numba's on-disk cache of a kernel does not see changes here, so bump the kernels'
source versions with them.
"""
import llvmlite.binding as llvm
from numba import types
from numba.core import config
from numba.extending import intrinsic

__all__ = ["ATTRIBUTE", "module_suffix", "prefer_wide_vectors", "source_line", "wide_vectors"]

#: The LLVM function attribute ``prefer_wide_vectors()`` sets.
ATTRIBUTE = '"prefer-vector-width"="512"'


def wide_vectors():
    """Whether Numba compiles for a CPU with AVX-512 (``NUMBA_CPU_FEATURES`` when set, else the host's)."""
    features = config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


@intrinsic
def prefer_wide_vectors(typingctx):
    """In a Numba function: vectorise this function with 512-bit registers (no effect at run time)."""

    def codegen(context, builder, signature, args):
        # llvmlite's FunctionAttributes names only flag attributes; a string attribute goes in as it is printed
        set.add(builder.function.attributes, ATTRIBUTE)
        return context.get_dummy_value()

    return types.none(), codegen


def source_line(indent="    "):
    """The line a generated kernel starts with: the call where :func:`wide_vectors`, else nothing."""
    return f"{indent}prefer_wide_vectors()\n" if wide_vectors() else ""


def module_suffix():
    """Suffix of a generated kernel module's name: ``'_w512'`` where :func:`wide_vectors`, else ``''``.  Machines
    that share a kernel cache folder but differ in AVX-512 then keep separate files instead of rewriting one."""
    return "_w512" if wide_vectors() else ""
