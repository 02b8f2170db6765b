r"""One fused CPU kernel, forward and backward, for the convolution stack of a training step.

The paper's luminosity network starts with

    Conv1D(C1, k, 'same') -> ReLU -> MCDropout -> Conv1D(C2, k, 'same') -> ReLU
    -> MaxPooling1D(p) -> Flatten -> MCDropout

on a ``(7514, 1)`` spectrum.  As TensorFlow operations its forward and backward
passes write and read about twenty ``batch x 7514 x C`` tensors and cost about
nine tenths of a CPU training step, while the
big dense layer that follows is a small part.  Here the whole stack is one
generated Numba kernel for the forward pass and one for the backward pass, per
star, in the core's cache:

* forward: both convolutions (unrolled taps and channels, vectorised over
  pixels), the ReLUs, both dropout masks, the pool maximum and its position;
  it keeps the first dropout's output (needed for the second convolution's
  weight gradient) and, per pooled value, the position of the maximum or -1
  where no gradient flows (ReLU inactive or dropped);
* backward: from the gradient of the stack's output, the gradients of both
  kernels and biases (the stack's input is data, so no input gradient).

The arithmetic is the layers' own: float32 values, the same weights, float64
accumulation of the weight gradients.  The dropout masks follow the law of
:func:`astronn_gaiacal.nn.fast.dropout` (dropped when a 16-bit uniform integer is
below ``round(rate * 2**16)``, kept values scaled by ``1 / (1 - rate)``), drawn as
in :mod:`astronn_gaiacal.nn.fused` from a counter keyed by one TensorFlow draw per
call, so a TensorFlow seed reproduces a training.

:func:`conv_stack` is the TensorFlow operation (with its gradient);
:func:`conv_stacks` finds the stacks in a Keras functional model and
:func:`call_with_fused_stacks` runs the model with them fused, which is what
the plugin's ``fit`` does (``train_fused = False`` on a model switches it off).
"""
from dataclasses import dataclass

import numpy as np

from .._compat import keras, tf
from . import fast
from .fast import keep_threshold
from .fused import aligned_empty, kernel_threads, load_module, thread_pool
from .fused_training_source import SOURCE_VERSION, ConvStackSpec, kernel_source
from .graph import dropout_types, functional_models, plain_activation, single_consumer_links

__all__ = ["ConvStackSpec", "conv_stack", "conv_stack_backward", "conv_stack_forward", "conv_stack_masks",
           "conv_stacks", "call_with_fused_stacks"]

_MODULES = {}


def _module_name(spec):
    from .vector_width import module_suffix

    return (f"astronn_gaiacal_stack_v{SOURCE_VERSION}_L{spec.length}_k{spec.kernel_size}_c{spec.in_channels}"
            f"_f{spec.filters1}x{spec.filters2}_p{spec.pool}{module_suffix()}")


def _module(spec):
    if spec not in _MODULES:
        _MODULES[spec] = load_module(_module_name(spec), kernel_source(spec))
    return _MODULES[spec]


def _input(x, spec):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (spec.length, spec.in_channels):
        raise ValueError(f"x must have shape (B, {spec.length}, {spec.in_channels}), got {x.shape}")
    return x


def _split(n_rows, threads):
    threads = max(1, min(kernel_threads() if threads is None else int(threads), n_rows))
    edges = np.linspace(0, n_rows, threads + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _run(fn, args, ranges):
    """``fn(*args(i), row0, row1)`` for each range, on the kernel threads (the caller's thread takes the first)."""
    futures = [thread_pool().submit(fn, *args(i), a, b) for i, (a, b) in enumerate(ranges) if i > 0]
    if ranges:
        fn(*args(0), *ranges[0])
    for fut in futures:
        fut.result()


def _weights(spec, **arrays):
    shapes = {"kernel1": (spec.kernel_size, spec.in_channels, spec.filters1), "bias1": (spec.filters1,),
              "kernel2": (spec.kernel_size, spec.filters1, spec.filters2), "bias2": (spec.filters2,)}
    out = []
    for name, value in arrays.items():
        arr = np.ascontiguousarray(value, dtype=np.float32)
        if arr.shape != shapes[name]:
            raise ValueError(f"{name} must have shape {shapes[name]}, got {arr.shape}")
        out.append(arr)
    return out


def _key(key):
    return np.uint64(int(key) % 2**64)


def _rates(rate1, rate2):
    return (np.uint16(keep_threshold(rate1)), np.float32(1.0 / (1.0 - rate1)), np.uint16(keep_threshold(rate2)),
            np.float32(1.0 / (1.0 - rate2)))


def conv_stack_forward(x, w1, b1, w2, b2, spec, key, rate1, rate2, threads=None):
    """Forward pass of the stack (see the module docstring).

    Parameters
    ----------
    x : ndarray, shape (B, length, in_channels)
    w1, b1, w2, b2 : ndarray
        Kernels ``(kernel_size, C_in, C_out)`` and biases of the two convolutions.
    spec : ConvStackSpec
    key : int
        64-bit key of this call's dropout masks.
    rate1, rate2 : float
        Dropout rates after the first convolution and after the flattening.
    threads : int, optional
        Worker threads (default ``astronn_gaiacal.nn.fused.kernel_threads()``).

    Returns
    -------
    out : ndarray (B, outputs) float32
        The stack's output.
    arg : ndarray (B, filters2, pooled) int8
        Position of each pool maximum in its window, -1 where no gradient flows (for
        :func:`conv_stack_backward`).
    """
    x = _input(x, spec)
    w1, b1, w2, b2 = _weights(spec, kernel1=w1, bias1=b1, kernel2=w2, bias2=b2)
    bsz = x.shape[0]
    out = aligned_empty((bsz, spec.outputs))
    arg = aligned_empty((bsz, spec.filters2, spec.pooled), np.int8)
    thr1, scale1, thr2, scale2 = _rates(rate1, rate2)
    common = (x, w1, b1, w2, b2, out, arg, _key(key), thr1, scale1, thr2, scale2)
    if bsz:
        _run(_module(spec).forward, lambda i: common, _split(bsz, threads))
    return out, arg


def conv_stack_backward(x, arg, grad, w1, b1, w2, spec, key, rate1, rate2, threads=None):
    """Gradients of both kernels and biases from the gradient of the stack's output.

    Parameters
    ----------
    x : ndarray (B, length, in_channels)
        The forward pass's input.
    arg : ndarray
        From :func:`conv_stack_forward`.
    grad : ndarray (B, outputs)
        Gradient of the loss with respect to the stack's output.
    w1, b1, w2 : ndarray
        First convolution's kernel and bias (it is recomputed), second convolution's kernel.
    spec, key, rate1, rate2, threads
        As for the :func:`conv_stack_forward` call.

    Returns
    -------
    gw1, gb1, gw2, gb2 : ndarray, float32
    """
    x = _input(x, spec)
    w1, b1, w2 = _weights(spec, kernel1=w1, bias1=b1, kernel2=w2)
    bsz = x.shape[0]
    grad = np.ascontiguousarray(grad, dtype=np.float32)
    if grad.shape != (bsz, spec.outputs):
        raise ValueError(f"grad must have shape {(bsz, spec.outputs)}, got {grad.shape}")
    arg = np.ascontiguousarray(arg, dtype=np.int8)
    if arg.shape != (bsz, spec.filters2, spec.pooled):
        raise ValueError(f"arg must have shape {(bsz, spec.filters2, spec.pooled)}, got {arg.shape}")
    k, c0, c1, c2 = spec.kernel_size, spec.in_channels, spec.filters1, spec.filters2
    ranges = _split(bsz, threads) if bsz else []
    parts = [(np.zeros((k, c0, c1)), np.zeros(c1), np.zeros((k, c1, c2)), np.zeros(c2)) for _ in ranges]
    thr1, scale1, _, scale2 = _rates(rate1, rate2)
    common = (x, arg, grad, w1, b1, w2, _key(key), thr1, scale1, scale2)
    _run(_module(spec).backward, lambda i: common + parts[i], ranges)
    total = [np.zeros((k, c0, c1)), np.zeros(c1), np.zeros((k, c1, c2)), np.zeros(c2)]
    for part in parts:
        for acc, value in zip(total, part):
            acc += value
    return tuple(a.astype(np.float32) for a in total)


def conv_stack_masks(spec, key, rate1, rate2, n_rows):
    """The keep-masks :func:`conv_stack_forward` draws for ``n_rows`` stars with ``key``.

    Returns
    -------
    mask1 : ndarray of bool, shape (n_rows, length, filters1)
        After the first convolution (pixel, channel).
    mask2 : ndarray of bool, shape (n_rows, outputs)
        After the flattening, in the output's order.
    """
    thr1, _, thr2, _ = _rates(rate1, rate2)
    m1, m2 = _module(spec).masks(_key(key), thr1, thr2, int(n_rows))
    return np.transpose(m1, (0, 2, 1)), np.transpose(m2, (0, 2, 1)).reshape(int(n_rows), spec.outputs)


def conv_stack(x, kernel1, bias1, kernel2, bias2, spec, rate1, rate2, key=None):
    """The stack as a TensorFlow operation with its gradient (none for ``x``: the stack's input is data).

    Parameters
    ----------
    x : Tensor (B, length, in_channels)
    kernel1, bias1, kernel2, bias2 : Tensor or Variable
    spec : ConvStackSpec
    rate1, rate2 : float
    key : Tensor, optional
        int64 scalar key of the masks; default: two draws of ``tf.random.uniform`` (reproducible
        under a TensorFlow seed, like Keras' dropout).

    Returns
    -------
    Tensor (B, outputs), float32
    """
    if key is None:
        halves = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        key = tf.cast(halves[0], tf.int64) * (2**31) + tf.cast(halves[1], tf.int64)
    rate1, rate2 = float(rate1), float(rate2)

    def fwd(xv, w1, b1, w2, b2, k):
        return conv_stack_forward(xv, w1, b1, w2, b2, spec, int(k), rate1, rate2)

    def bwd(xv, arg, grad, w1, b1, w2, k):
        return conv_stack_backward(xv, arg, grad, w1, b1, w2, spec, int(k), rate1, rate2)

    @tf.custom_gradient
    def op(xv, w1, b1, w2, b2):
        out, arg = tf.numpy_function(fwd, [xv, w1, b1, w2, b2, key], [tf.float32, tf.int8], stateful=True)
        out.set_shape([xv.shape[0], spec.outputs])

        def grad_fn(gout):
            grads = tf.numpy_function(bwd, [xv, arg, tf.cast(gout, tf.float32), w1, b1, w2, key], [tf.float32] * 4,
                                      stateful=False)
            for gv, ref in zip(grads, (w1, b1, w2, b2)):
                gv.set_shape(ref.shape)
            return (None, *grads)

        return out, grad_fn

    x = tf.cast(x, tf.float32)
    return op(x, *(tf.convert_to_tensor(v) for v in (kernel1, bias1, kernel2, bias2)))


# ----------------------------------------------------------------------------- graph matching
@dataclass(frozen=True)
class _Stack:
    spec: ConvStackSpec
    conv1: object
    conv2: object
    rate1: float
    rate2: float
    output_id: str


def _same_conv(layer):
    if not (fast.conv1d_is_small(layer) and layer.padding == "same" and layer.use_bias):
        return None
    return plain_activation(layer)


def _rate(layer, types):
    """The drop rate of an always-on dropout layer of a known mask law (0 when disabled), else None."""
    if type(layer) not in types or getattr(layer, "noise_shape", None) is not None:
        return None
    return 0.0 if getattr(layer, "disable_layer", False) else float(layer.rate)


def conv_stacks(model):
    """``{id(node): stack}`` for each fusable convolution stack of a functional ``model`` (not nested ones).

    A stack qualifies when its first convolution's input is data (a model input, possibly reshaped) and
    every intermediate tensor has exactly one consumer.
    """
    if not hasattr(model, "_nodes_by_depth"):
        return {}
    next_node, producer = single_consumer_links(model)
    types = dropout_types()

    def is_data(tid):
        node = producer.get(tid)
        while node is not None and not node.is_input:
            if not isinstance(node.layer, keras.layers.Reshape) or len(node.flat_input_ids) != 1:
                return False
            node = producer.get(node.flat_input_ids[0])
        return True

    def relu_after(node, own):
        """Follow activation layers after a convolution; returns (last node, whether a ReLU was applied)."""
        relu = own == "relu"
        while True:
            nxt = next_node(node)
            is_activation = nxt is not None and isinstance(nxt.layer, (keras.layers.Activation, keras.layers.ReLU))
            act = plain_activation(nxt.layer) if is_activation else None
            if act is None:
                return node, relu
            relu, node = relu or act == "relu", nxt

    found = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.is_input or _same_conv(node.layer) is None or len(node.flat_input_ids) != 1:
                continue
            if not is_data(node.flat_input_ids[0]):
                continue
            conv1 = node.layer
            cur, relu1 = relu_after(node, _same_conv(conv1))
            drop1 = next_node(cur)
            rate1 = None if drop1 is None else _rate(drop1.layer, types)
            conv2_node = None if rate1 is None else next_node(drop1)
            if conv2_node is None or _same_conv(conv2_node.layer) is None or not relu1:
                continue
            conv2 = conv2_node.layer
            if int(conv2.kernel_size[0]) != int(conv1.kernel_size[0]):
                continue
            cur, relu2 = relu_after(conv2_node, _same_conv(conv2))
            pool = next_node(cur)
            if pool is None or not relu2 or not fast.maxpool1d_is_reshapable(pool.layer):
                continue
            flat = next_node(pool)
            if flat is None or not isinstance(flat.layer, keras.layers.Flatten):
                continue
            if getattr(flat.layer, "data_format", "channels_last") != "channels_last":
                continue
            drop2 = next_node(flat)
            rate2 = None if drop2 is None else _rate(drop2.layer, types)
            if rate2 is None:
                continue
            shape = conv1.input_shape
            if not isinstance(shape, tuple) or len(shape) != 3 or shape[1] is None or shape[2] is None:
                continue
            spec = ConvStackSpec(int(shape[1]), int(conv1.kernel_size[0]), int(shape[2]), int(conv1.filters),
                                 int(conv2.filters), int(pool.layer.pool_size[0]))
            if spec.pooled < 1:
                continue
            found[id(node)] = _Stack(spec, conv1, conv2, rate1, rate2, drop2.flat_output_ids[0])
    return found


def has_conv_stacks(model):
    """Whether :func:`call_with_fused_stacks` would fuse a stack of ``model`` or of a model nested in it."""
    return hasattr(model, "_nodes_by_depth") and any(conv_stacks(m) for m in functional_models(model))


def call_with_fused_stacks(model, inputs):
    """Call a functional Keras ``model`` with each fusable convolution stack run by :func:`conv_stack`.

    The other layers are called as in ``model(inputs)``, nested functional models walked the same way.
    The result equals ``model(inputs)`` up to float32 rounding and the dropout masks.

    Parameters
    ----------
    model : keras.Model
    inputs : Tensor or list of Tensor

    Returns
    -------
    Tensor or list of Tensor, as ``model(inputs)``.
    """
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outputs = _run_graph(model, inputs)
    return outputs[0] if len(outputs) == 1 else outputs


def _run_graph(model, inputs):
    stacks = conv_stacks(model)
    usage = model._tensor_usage_count
    tensors = {}
    for ref, value in zip(model.inputs, inputs):
        rid = str(id(ref))
        tensors[rid] = [tf.cast(value, ref.dtype)] * usage[rid]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(t not in tensors for t in node.flat_input_ids):
                continue  # a fused stack's inner nodes never get their inputs
            args, kwargs = node.map_arguments(tensors)
            if id(node) in stacks:
                s = stacks[id(node)]
                out = conv_stack(args[0], s.conv1.kernel, s.conv1.bias, s.conv2.kernel, s.conv2.bias, s.spec,
                                 s.rate1, s.rate2)
                tensors[s.output_id] = [out] * usage[s.output_id]
                continue
            layer = node.layer
            if hasattr(layer, "_nodes_by_depth") and not kwargs and has_conv_stacks(layer):
                sub = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
                outs = _run_graph(layer, sub)
            else:
                outs = tf.nest.flatten(layer(*args, **kwargs))
            for rid, value in zip(node.flat_output_ids, outs):
                tensors[rid] = [value] * usage[rid]
    return [tensors[str(id(ref))].pop() for ref in model.outputs]
