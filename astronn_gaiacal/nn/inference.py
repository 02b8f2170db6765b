r"""Monte Carlo dropout inference, streamed in batches, near the CPU's matrix-multiply rate.

For each batch of ``B`` inputs the stochastic model is evaluated ``mc_num``
times in one compiled call and the mean and variance over the passes are
reduced in-graph.  The call is built by walking the Keras functional graph
(nested models included) instead of calling the model:

* the **deterministic prefix** (every layer before the first active
  ``MCDropout`` on each path) runs once per input; its output is then tiled
  ``mc_num`` times, so e.g. the paper network's first convolution is not
  repeated 100 times;
* each ``MCDropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> MCDropout``
  stretch (the paper's second convolution) runs as one generated Numba kernel
  per pass (:mod:`astronn_gaiacal.nn.fused`), which never materialises the
  tiled activations (``fused_kernels=False`` runs it as the layers below);
* other ``Conv1D`` with few channels run as one matrix product of pairs of pixel
  blocks with a block-Toeplitz kernel (:func:`~astronn_gaiacal.nn.fast.block_conv1d`,
  the computation :class:`~astronn_gaiacal.nn.layers.BlockConv1D` trains with;
  as fast here as the XLA-fused shifted multiply-adds of
  :func:`~astronn_gaiacal.nn.fast.conv1d_direct`, used with ``xla=False``), ``MaxPooling1D`` as a
  reshape + max, and ``MCDropout`` draws 16-bit random numbers two per Philox
  word (:func:`~astronn_gaiacal.nn.fast.dropout`), each compiled as its own
  XLA cluster: the same operations as the layers', computed the way this
  hardware runs them fast;
* the mean and variance over passes are two-pass moments in float64;
* a plain Dense/MCDropout chain (the offset network) runs as a whole in one
  generated Numba kernel, masks drawn independently for every row and pass
  inside it (:mod:`astronn_gaiacal.nn.fused_dense`).

Memory is bounded by ``batch_size * mc_num`` rows (``batch_size`` is chosen
from :data:`DEFAULT_CALL_VALUES` when not given) whatever ``N``.  A layer
the walker does not know runs as itself on tiled inputs; a model it cannot
walk at all (subclassed models) is tiled and called as a whole, as before.

``bf16=True`` runs the matrix products in bfloat16 (inputs and weights
rounded to 8 significant bits, accumulation in float32).  It is off by
default: on CPUs without AVX512-BF16/AMX it is
*slower*, and it changes the predictions at the 1e-3 relative level (see
``docs/performance.rst``).
"""
import contextlib
import weakref

import numpy as np
from tqdm.auto import tqdm

from .._compat import keras, tf
from . import fast, fused, fused_dense
from .device import use_fused_kernels
from .graph import dropout_types, functional_models, plain_activation, single_consumer_links
from .layers import ConstantFeature, FakemagLogVariance, FakemagToParallax, FastMCDropout, Scale, SliceColumns
from astroNN.nn.layers import BoolMask, MCDropout  # noqa: E402,I001  (after _compat has set up Keras 2)

#: Stars per compiled call of the old interface (kept for callers that pass it explicitly).
DEFAULT_BATCH_SIZE = 64
#: Input values (rows x input width, rows = inputs x passes) per compiled call when
#: ``batch_size`` is not given: 4 MB of float32, so a call's working set stays in cache-sized
#: pieces (one APOGEE spectrum x 100 passes; a few thousand Gaia rows x 100 passes).
DEFAULT_CALL_VALUES = 2**20
#: The same when the model has a fused stretch (:mod:`astronn_gaiacal.nn.fused`): its passes never
#: materialise the tiled activations, so a call can hold more inputs (about 22 APOGEE spectra x 100 passes;
#: measured 4-14 % faster than 11, docs/performance.rst).
DEFAULT_FUSED_CALL_VALUES = 2**24


def _iter_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _iter_layers(layer)


def _mc_dropout_layers(model):
    return [lay for lay in _iter_layers(model) if isinstance(lay, MCDropout)]


@contextlib.contextmanager
def dropout_disabled(model):
    """Switch astroNN's MC-dropout layers off inside the block (deterministic passes).

    Parameters
    ----------
    model : keras.Model
    """
    layers = _mc_dropout_layers(model)
    previous = [lay.disable_layer for lay in layers]
    for lay in layers:
        lay.disable_layer = True
    try:
        yield model
    finally:
        for lay, prev in zip(layers, previous):
            lay.disable_layer = prev


# ----------------------------------------------------------------------------- graph walker
def _deterministic_types():
    # astroNN.models is imported on first use: importing it runs the plugin's registration hook
    from astroNN.models.apogee_models import DeNormAdd

    L = keras.layers
    return (
        L.Dense, L.Conv1D, L.Conv2D, L.Activation, L.ReLU, L.Reshape, L.Flatten, L.MaxPooling1D,
        L.MaxPooling2D, L.AveragePooling1D, L.Concatenate, L.Add, L.Multiply, L.Subtract, L.Dropout,
        L.InputLayer, BoolMask, DeNormAdd, ConstantFeature, FakemagLogVariance, FakemagToParallax, Scale,
        SliceColumns,
    )


class _Val:
    """A computed tensor and whether it already carries the ``mc_num`` passes (rows ``mc * B``)."""

    __slots__ = ("t", "tiled")

    def __init__(self, t, tiled):
        self.t, self.tiled = t, tiled


class _Walker:
    def __init__(self, mc_num, generator, bf16, xla=True, fused=True):
        self.xla = xla
        self.fused = fused and not bf16

        self.mc = mc_num
        self.gen = generator
        self.bf16 = bf16
        self.mcdropout = MCDropout
        self.plain_dropout = (MCDropout, FastMCDropout)  # same mask law as fast.dropout
        self.deterministic = _deterministic_types()

    def tile(self, v):
        if v.tiled:
            return v
        t = v.t
        reps = tf.concat([[self.mc], tf.ones([tf.rank(t) - 1], tf.int32)], 0)
        return _Val(tf.tile(t, reps), True)

    def run_model(self, model, inputs):
        """Walk a functional model on ``_Val`` inputs; returns a list of ``_Val`` outputs."""
        nodes_by_depth = model._nodes_by_depth
        usage = model._tensor_usage_count
        tensor_dict = {}
        for ref, val in zip(model.inputs, inputs):
            rid = str(id(ref))
            tensor_dict[rid] = [val] * usage[rid]
        fusions = _fusions(model, self.plain_dropout) if self.fused else {}
        for depth in sorted(nodes_by_depth, reverse=True):
            for node in nodes_by_depth[depth]:
                if node.is_input or any(t not in tensor_dict for t in node.flat_input_ids):
                    continue
                args, kwargs = node.map_arguments(tensor_dict)
                if id(node) in fusions:  # the chain's inner nodes then never get their inputs and are skipped
                    chain = fusions[id(node)]
                    tensor_dict[chain.output_id] = [self.run_fused(chain, args[0])] * usage[chain.output_id]
                    continue
                outputs = self.call_layer(node.layer, args, kwargs)
                for rid, val in zip(node.flat_output_ids, outputs):
                    tensor_dict[rid] = [val] * usage[rid]
        return [tensor_dict[str(id(ref))].pop() for ref in model.outputs]

    def call_layer(self, layer, args, kwargs):
        flat = tf.nest.flatten((args, kwargs))
        vals = [v for v in flat if isinstance(v, _Val)]
        if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth") and not kwargs:
            if len(args) == 1 and isinstance(args[0], (list, tuple)):
                args = tuple(args[0])
            return self.run_model(layer, list(args))
        stochastic = isinstance(layer, self.mcdropout) and not layer.disable_layer
        known = isinstance(layer, self.deterministic) or isinstance(layer, self.mcdropout)
        tile_all = stochastic or not known or (any(v.tiled for v in vals) and not all(v.tiled for v in vals))
        if tile_all:
            vals_tiled = {id(v): self.tile(v) for v in vals}
            flat = [vals_tiled[id(v)] if isinstance(v, _Val) else v for v in flat]
        tiled = any(v.tiled for v in flat if isinstance(v, _Val))
        args, kwargs = tf.nest.pack_sequence_as((args, kwargs), [v.t if isinstance(v, _Val) else v for v in flat])
        out = self.apply(layer, args, kwargs, stochastic)
        return [_Val(t, tiled) for t in tf.nest.flatten(out)]

    def run_fused(self, chain, val):
        """dropout -> Conv1D -> activation -> MaxPooling1D -> Flatten [-> dropout] as one Numba kernel per pass."""
        reps = 1 if val.tiled else self.mc
        spec, rate_in, rate_out = chain.spec, chain.rate_in, chain.rate_out
        conv = chain.conv
        bias = conv.bias if conv.use_bias else tf.zeros([spec.filters], tf.float32)
        key = self.gen.uniform_full_int([], tf.int64)

        def run(x, kernel, b, k):
            return fused.mc_conv_pool(x, kernel, b, spec, int(k), reps, rate_in, rate_out)

        out = tf.numpy_function(run, [tf.cast(val.t, tf.float32), conv.kernel, bias, key], tf.float32, stateful=True)
        out.set_shape([None, spec.pooled * spec.filters])
        return _Val(out, True)

    def apply(self, layer, args, kwargs, stochastic):
        x = args[0] if args else None
        if isinstance(layer, self.mcdropout):
            if not stochastic:
                return x
            if type(layer) in self.plain_dropout and layer.noise_shape is None:
                return (fast.xla_dropout if self.xla else fast.dropout)(x, float(layer.rate), self.gen)
            return layer(x)  # spatial and other MCDropout variants: as themselves
        if fast.conv1d_is_small(layer) and not kwargs and x.shape.rank == 3 and x.shape[1] is not None:
            kernel, bias = layer.kernel, (layer.bias if layer.use_bias else None)
            if self.bf16:
                x, kernel = tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16)
            if self.xla:  # one matrix product per pair of pixel blocks (the layer's own block size if it has one)
                block = getattr(layer, "block_size", None)
                out = tf.cast(fast.block_conv1d(x, kernel, padding=layer.padding, block=block), tf.float32)
            else:
                out = tf.cast(fast.conv1d_direct(x, kernel, padding=layer.padding), tf.float32)
            out = out + bias if bias is not None else out
            return layer.activation(out) if layer.activation is not None else out
        if fast.maxpool1d_is_reshapable(layer) and not kwargs and x.shape.rank == 3 and x.shape[1] is not None:
            return (fast.xla_max_pool1d if self.xla else fast.max_pool1d)(x, int(layer.pool_size[0]))
        if self.bf16 and isinstance(layer, keras.layers.Dense) and not kwargs and layer.built:
            y = tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), tf.cast(layer.kernel, tf.bfloat16)), tf.float32)
            y = y + layer.bias if layer.use_bias else y
            return layer.activation(y) if layer.activation is not None else y
        return layer(*args, **kwargs)


class _Chain:
    __slots__ = ("spec", "conv", "rate_in", "rate_out", "output_id")

    def __init__(self, spec, conv, rate_in, rate_out, output_id):
        self.spec, self.conv, self.rate_in, self.rate_out, self.output_id = spec, conv, rate_in, rate_out, output_id


def _fusions(model, types):
    """``{id(node): _Chain}`` for each fusable dropout -> Conv1D -> ... -> Flatten [-> dropout] stretch of ``model``."""
    only_consumer, _ = single_consumer_links(model)

    def active_dropout(layer):
        return type(layer) in types and layer.noise_shape is None and not layer.disable_layer and layer.rate > 0

    found = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.is_input or not active_dropout(node.layer):
                continue
            conv_node = only_consumer(node)
            conv = None if conv_node is None else conv_node.layer
            if conv is None or not fast.conv1d_is_small(conv) or plain_activation(conv) is None:
                continue
            shape = conv.input_shape
            if not isinstance(shape, tuple) or len(shape) != 3 or shape[1] is None or shape[2] is None:
                continue
            acts, cur, pool = [plain_activation(conv)], conv_node, None
            while True:
                cur = only_consumer(cur)
                if cur is None:
                    break
                layer = cur.layer
                if pool is None and fast.maxpool1d_is_reshapable(layer):
                    pool = layer
                elif isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)) and plain_activation(layer):
                    acts.append(plain_activation(layer))
                else:
                    break
            if cur is None or pool is None or not isinstance(cur.layer, keras.layers.Flatten):
                continue
            if getattr(cur.layer, "data_format", "channels_last") != "channels_last":
                continue
            flatten, rate_out = cur, 0.0
            nxt = only_consumer(flatten)
            if nxt is not None and active_dropout(nxt.layer):
                flatten, rate_out = nxt, float(nxt.layer.rate)
            k, length = int(conv.kernel_size[0]), int(shape[1])
            left = {"same": (k - 1) // 2, "valid": 0, "causal": k - 1}[conv.padding]
            out_len = length - k + 1 if conv.padding == "valid" else length
            spec = fused.ConvPoolSpec(length, k, int(shape[2]), int(conv.filters), left, out_len,
                                      int(pool.pool_size[0]), "relu" in acts)
            if spec.pooled < 1:
                continue
            found[id(node)] = _Chain(spec, conv, float(node.layer.rate), rate_out, flatten.flat_output_ids[0])
    return found


def _has_fusions(model):
    """Whether the MC-dropout walker would fuse a stretch of ``model`` or of a model nested in it."""
    if not hasattr(model, "_nodes_by_depth"):
        return False
    types = dropout_types()
    return any(_fusions(m, types) for m in functional_models(model))


def _tiled_call(model, x, mc_num):
    """The plain path: tile the input and call the model (used when the graph cannot be walked)."""
    reps = tf.concat([[mc_num], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    return model(tf.tile(x, reps), training=False)


def _moments(out, n, mc_num):
    out = tf.cast(out, tf.float64)
    out = tf.reshape(out, tf.concat([[mc_num, n], [-1]], 0))
    mean = tf.reduce_mean(out, axis=0)
    var = tf.reduce_mean(tf.square(out - mean[None]), axis=0)  # two-pass: no cancellation
    return mean, var


_STEPS = weakref.WeakKeyDictionary()
_GENERATOR = []


def _call_seed():
    """TensorFlow's global seed when one is set (the same call then gives the same result, as
    Keras' seeded dropout does), else a fresh seed from NumPy's global state."""
    try:
        from tensorflow.python.eager import context

        seed = context.global_seed()
    except (ImportError, AttributeError):
        seed = None
    return int(seed) if seed is not None else int(np.random.randint(0, 2**31 - 1))


def _default_generator():
    """The module's Philox generator (XLA compiles Philox well; its default ThreeFry is slow on CPU)."""
    if not _GENERATOR:
        _GENERATOR.append(tf.random.Generator.from_seed(0, alg="philox"))
    return _GENERATOR[0]


def _mc_step(model, mc_num, bf16=False, walk=True, generator=None, xla=True, fused_kernels=True):
    """A compiled ``x -> (mean, var)`` of ``mc_num`` stochastic passes, cached per model and settings."""
    key = (int(mc_num), bool(bf16), bool(walk), id(generator), bool(xla), bool(fused_kernels),
           tuple(lay.disable_layer for lay in _mc_dropout_layers(model)))
    per_model = _STEPS.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    gen = generator if generator is not None else _default_generator()
    model_ref = weakref.ref(model)  # the cache must not keep the model alive
    walkable = walk and hasattr(model, "_nodes_by_depth") and len(model.inputs) == 1 and len(model.outputs) == 1

    @tf.function
    def step(x):
        n = tf.shape(x)[0]
        model = model_ref()
        if walkable:
            walker = _Walker(int(mc_num), gen, bf16, xla, fused_kernels)
            (out,) = walker.run_model(model, [_Val(x, False)])
            out = out.t if out.tiled else walker.tile(out).t
        else:
            out = _tiled_call(model, x, int(mc_num))
        return _moments(out, n, int(mc_num))

    per_model[key] = step
    return step


def dropout_active(model):
    """Whether ``model`` has an MC-dropout layer that is switched on (not inside :func:`dropout_disabled`)."""
    return any(not getattr(lay, "disable_layer", False) for lay in _mc_dropout_layers(model))


def dropout_switched_off(model):
    """Whether ``model`` has MC-dropout layers and all are switched off: its passes have no spread to measure."""
    layers = _mc_dropout_layers(model)
    return bool(layers) and all(getattr(lay, "disable_layer", False) for lay in layers)


def check_mc_passes(mc_num, dropout=True, what="mc_num"):
    """Refuse fewer than two MC-dropout passes while dropout is on: one pass has no MC-dropout spread.

    Raises
    ------
    ValueError
        ``mc_num`` is not a positive integer, or is 1 with ``dropout``.
    """
    if isinstance(mc_num, bool) or int(mc_num) != mc_num or int(mc_num) < 1:
        raise ValueError(f"{what} must be a positive integer, got {mc_num!r}")
    if dropout and int(mc_num) < 2:
        raise ValueError(f"{what}=1 with MC dropout on gives results without their MC-dropout uncertainty (one "
                         f"pass has no spread): use at least 2 passes (the default is 100), or switch dropout off "
                         f"for one deterministic pass")


def mc_predict(model, x, mc_num=100, batch_size=None, progress=True, desc="MC dropout", bf16=False,
               fast_graph=True, generator=None, xla=True, fused_kernels=None):
    """Mean and variance of ``mc_num`` stochastic passes of ``model`` over ``x``.

    Parameters
    ----------
    model : keras.Model
        A model whose dropout is active at inference (astroNN ``MCDropout``);
        one input, one output of shape ``(batch, ...)``.
    x : ndarray, shape (N, ...)
    mc_num : int
        Number of stochastic passes per input (>= 1).
    batch_size : int, optional
        Inputs per compiled call; each call processes ``batch_size * mc_num``
        rows.  Default: ``max(1, DEFAULT_CALL_VALUES // (input width * mc_num))``
        (:data:`DEFAULT_FUSED_CALL_VALUES` when the model has a fused stretch).
    progress : bool
        Show a tqdm bar.
    desc : str
        Label of the progress bar.
    bf16 : bool
        Matrix products in bfloat16 (see the module notes; off by default).
    fast_graph : bool
        Walk the graph with the fast kernels (default); ``False`` tiles the
        input and calls the Keras model as it is.
    generator : tf.random.Generator, optional
        Source of the dropout masks (use ``alg='philox'``).  By default the
        module's Philox generator, reset at each call to TensorFlow's global
        seed when one is set (``tf.random.set_seed``: repeated calls then give
        identical results), otherwise to a seed drawn from NumPy's global state.
    xla : bool
        Compile each call with XLA (``jit_compile``; default), which fuses the
        element-wise work of the passes.
    fused_kernels : bool or None
        Run each dropout -> Conv1D -> ReLU -> MaxPooling1D -> Flatten -> dropout
        stretch as one Numba kernel per pass (:mod:`astronn_gaiacal.nn.fused`).
        ``None`` (default) chooses by device
        (:func:`~astronn_gaiacal.nn.device.use_fused_kernels`); ``False`` runs
        those layers as separate TensorFlow operations.  With the fused kernels,
        a plain ``Dense -> [MCDropout -> Dense]...`` chain (:func:`dense_chain`,
        activations linear/ReLU/tanh; e.g. the offset network) runs as one kernel
        with masks independent for every row and pass
        (:mod:`astronn_gaiacal.nn.fused_dense`): a row's result then depends on
        the seed and its row number only, not on ``batch_size``.

    Returns
    -------
    mean, var : ndarray, shape (N, k)
        Float64 (``k`` = product of the output's non-batch dimensions); empty
        ``(0, k)`` arrays when ``N == 0``.
    """
    check_mc_passes(mc_num, dropout=False)  # one pass is the caller's choice here (e.g. dropout switched off)
    mc_num = int(mc_num)
    fused_kernels = use_fused_kernels(fused_kernels, "inference")
    chain = dense_chain(model) if fast_graph and fused_kernels and not bf16 else None
    spec = None if chain is None else fused_dense.chain_spec(chain)
    if spec is not None:  # a Dense/MCDropout chain: one kernel, masks independent per row and pass
        if generator is None:
            _default_generator().reset_from_seed(_call_seed())
        key = int((generator or _default_generator()).uniform_full_int([], tf.int64).numpy())
        return fused_dense.mc_predict_chain(chain, spec, x, mc_num, key, batch_size, progress, desc)
    if batch_size is None:
        width = max(1, int(np.prod(model.input_shape[1:])))
        values = DEFAULT_FUSED_CALL_VALUES if (fast_graph and fused_kernels and not bf16
                                               and _has_fusions(model)) else DEFAULT_CALL_VALUES
        batch_size = max(1, values // (width * mc_num))
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    k = int(np.prod(model.output_shape[1:]))
    if n == 0:
        return np.empty((0, k)), np.empty((0, k))
    if generator is None:
        _default_generator().reset_from_seed(_call_seed())
    step = _mc_step(model, mc_num, bf16=bf16, walk=fast_graph, generator=generator, xla=xla,
                    fused_kernels=fused_kernels)
    batch_size = min(batch_size, n)
    mean_out, var_out = np.empty((n, k)), np.empty((n, k))
    with tqdm(total=n, unit="star", desc=desc, disable=not progress, leave=False) as bar:
        bar.set_postfix({"mc_num": mc_num})
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            chunk = x[start:stop]
            if stop - start < batch_size:  # pad the last batch: one compiled shape for the whole run
                chunk = np.concatenate([chunk, np.zeros((batch_size - (stop - start),) + x.shape[1:], x.dtype)])
            mean, var = step(tf.constant(chunk))
            mean_out[start:stop] = mean.numpy().reshape(batch_size, k)[: stop - start]
            var_out[start:stop] = var.numpy().reshape(batch_size, k)[: stop - start]
            bar.update(stop - start)
    return mean_out, var_out


# ------------------------------------------------------------------ dense networks, masks per pass
def dense_chain(model):
    """``[(kernel, bias, activation, dropout_rate_before), ...]`` of a plain Dense/MCDropout network, or ``None``.

    The network must be one input -> ``Dense`` and active ``MCDropout``
    layers only (e.g. the offset calibration model), each dropout followed by
    a ``Dense``.
    """
    if not hasattr(model, "_nodes_by_depth") or len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    chain, rate = [], 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if type(layer) in dropout_types() and layer.noise_shape is None:
            if rate or not chain:  # two dropouts in a row, or dropout on the raw input
                return None
            rate = 0.0 if layer.disable_layer else float(layer.rate)
            continue
        if not isinstance(layer, keras.layers.Dense) or len(layer.inbound_nodes) != 1:
            return None
        chain.append((layer.kernel, layer.bias if layer.use_bias else None, layer.activation, rate))
        rate = 0.0
    if rate or not chain or len(chain) != len([lay for lay in model.layers if isinstance(lay, keras.layers.Dense)]):
        return None
    return chain


def _dense_step(chain, mc_num, generator):
    @tf.function(jit_compile=True)
    def step(x):
        kernel, bias, act, _ = chain[0]
        h = tf.matmul(x, kernel)  # (n, d): deterministic prefix, once per input
        h = act(h + bias) if bias is not None else act(h)
        h = h[:, None, :]  # (n, 1 | T, d)
        for kernel, bias, act, rate in chain[1:]:
            d_in = int(kernel.shape[0])
            if rate > 0:
                keep = fast.bernoulli_keep_mask([mc_num, d_in], rate, generator)
                w = tf.where(keep[:, :, None], kernel[None] * (1.0 / (1.0 - rate)), 0.0)  # (T, d_in, d_out)
            else:
                w = tf.broadcast_to(kernel[None], [mc_num, *kernel.shape])
            if h.shape[1] == 1:  # (n, d) x (T, d, e) -> (n, T, e) as one matrix product
                y = tf.reshape(tf.matmul(h[:, 0], tf.reshape(tf.transpose(w, [1, 0, 2]), [d_in, -1])),
                               [-1, mc_num, int(kernel.shape[1])])
            else:  # one matrix product per pass (measured faster than einsum or multiply-and-sum)
                y = tf.transpose(tf.matmul(tf.transpose(h, [1, 0, 2]), w), [1, 0, 2])
            h = act(y + bias) if bias is not None else act(y)
        if h.shape[1] == 1:
            h = tf.broadcast_to(h, [tf.shape(h)[0], mc_num, h.shape[2]])
        out = tf.cast(h, tf.float64)  # (n, T, k)
        mean = tf.reduce_mean(out, axis=1)
        return mean, tf.reduce_mean(tf.square(out - mean[:, None]), axis=1)

    return step


def mc_predict_shared_masks(model, x, mc_num=100, batch_size=4096, progress=True, desc="MC dropout", generator=None):
    """MC dropout of a Dense/MCDropout network with each pass's masks shared by a batch of inputs.

    Pass ``t`` of a batch is one thinned network (dropout masks on the units,
    drawn independently for every pass and every batch) applied to all the
    batch's inputs, so the masks fold into the weights and each pass is a
    plain matrix product.  For every input the ``mc_num`` passes are
    independent draws from the same distribution as in :func:`mc_predict`
    (same mask law, 16-bit draws), so the mean and variance of each input are
    distributed the same; only the MC noise of *different* inputs in one
    batch is correlated.  Use it for per-star zero-points of large catalogues;
    do not average the MC noise away over stars.

    Parameters
    ----------
    model : keras.Model
        A chain ``Dense -> [MCDropout -> Dense]...`` (see :func:`dense_chain`).
    x : ndarray, shape (N, F)
    mc_num, batch_size, progress, desc, generator
        As :func:`mc_predict`; ``batch_size`` is the number of inputs that
        share one set of ``mc_num`` masks.

    Returns
    -------
    mean, var : ndarray, shape (N, k), float64

    Raises
    ------
    ValueError
        If ``model`` is not such a chain, or ``mc_num``/``batch_size`` are not
        positive integers.
    """
    if isinstance(mc_num, bool) or int(mc_num) != mc_num or int(mc_num) < 1:
        raise ValueError(f"mc_num must be a positive integer, got {mc_num!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    chain = dense_chain(model)
    if chain is None:
        raise ValueError(f"model {model.name!r} is not a Dense/MCDropout chain; use mc_predict")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != int(chain[0][0].shape[0]):
        raise ValueError(f"x must have shape (N, {int(chain[0][0].shape[0])}), got {x.shape}")
    n, k = x.shape[0], int(chain[-1][0].shape[1])
    if n == 0:
        return np.empty((0, k)), np.empty((0, k))
    if generator is None:
        _default_generator().reset_from_seed(_call_seed())
    gen = generator if generator is not None else _default_generator()
    key = ("shared", int(mc_num), id(gen))
    per_model = _STEPS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _dense_step(chain, int(mc_num), gen)
    step = per_model[key]
    batch_size = min(int(batch_size), n)
    mean_out, var_out = np.empty((n, k)), np.empty((n, k))
    with tqdm(total=n, unit="star", desc=desc, disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            chunk = x[start:stop]
            if stop - start < batch_size:
                chunk = np.concatenate([chunk, np.zeros((batch_size - (stop - start), x.shape[1]), x.dtype)])
            mean, var = step(tf.constant(chunk))
            mean_out[start:stop] = mean.numpy()[: stop - start]
            var_out[start:stop] = var.numpy()[: stop - start]
            bar.update(stop - start)
    return mean_out, var_out
