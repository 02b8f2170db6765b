"""Small helpers for walking Keras functional graphs (shared by the inference and training fusions)."""
from .._compat import keras
from .layers import FastMCDropout
from astroNN.nn.layers import MCDropout  # noqa: E402,I001  (after _compat has set up Keras 2)

__all__ = ["dropout_types", "functional_models", "plain_activation", "single_consumer_links"]


def dropout_types():
    """astroNN's ``MCDropout`` and the plugin's ``FastMCDropout``: always-on dropout with the 16-bit mask law."""
    return (MCDropout, FastMCDropout)


def plain_activation(layer):
    """'relu' or 'linear' for a layer whose activation a fused kernel can absorb, else None."""
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.max_value is None and float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0
        return "relu" if plain else None
    act = getattr(getattr(layer, "activation", None), "__name__", None)
    return act if act in ("relu", "linear") else None


def functional_models(model):
    """``model`` and every functional model nested in it, outermost first."""
    yield model
    for layer in model.layers:
        if hasattr(layer, "_nodes_by_depth"):
            yield from functional_models(layer)


def single_consumer_links(model):
    """``(next_node, producer)`` for the nodes of a functional ``model``.

    ``next_node(node)`` is the one node that reads ``node``'s single output, when nothing else reads it and it
    has no other input, else None; ``producer`` maps a tensor id to the node that makes it.
    """
    consumers, producer = {}, {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            for tid in node.flat_input_ids:
                consumers.setdefault(tid, []).append(node)
            for tid in node.flat_output_ids:
                producer[tid] = node
    usage = model._tensor_usage_count

    def next_node(node):
        out = node.flat_output_ids
        if len(out) != 1 or usage.get(out[0], 0) != 1 or len(consumers.get(out[0], [])) != 1:
            return None
        nxt = consumers[out[0]][0]
        return nxt if len(nxt.flat_input_ids) == 1 else None

    return next_node, producer
