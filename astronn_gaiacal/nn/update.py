"""One compiled optimiser update per training step, with the L2 penalties' gradients folded into it.

A Keras training step on the CPU computes the gradient of each L2 penalty ``c/2 * sum(w**2)``
(tf-keras' ``L2(l2)`` is ``2 * l2 * tf.nn.l2_loss(w)``, so ``c = 2 * l2``) as its own ``c * w``
product, adds it to the data gradient with an ``AddN``, and then runs the optimiser's update of
each variable as a separate XLA computation.  For the paper's network, whose 7512 x 164 dense
kernel holds 99 % of the weights, that is two extra passes over the kernel and 18 launches per step.

:class:`FoldedUpdate` keeps the arithmetic and moves it: the penalties' values still enter the
loss (the same tensors as ``model.losses``), but the tape does not record the penalties of the
L2-regularised kernels it recognises; their gradient ``c * w`` is added to the data gradient
inside one ``jit_compile`` function that also runs ``optimizer.apply_gradients`` for every
variable, so XLA fuses the addition into the update's single pass over each weight array.
Penalties it does not recognise (any other regulariser or ``add_loss``) keep their gradient on
the tape.  The optimiser and its state are the model's own, unchanged.
"""
import functools

from .._compat import keras, tf

__all__ = ["FoldedUpdate", "folded_l2_kernels"]


def folded_l2_kernels(model):
    """``{id(callable loss): (variable, c)}`` for the callable losses of ``model`` that are a plain ``L2``
    kernel regulariser: the gradient of that loss is ``c * variable``.

    A callable loss qualifies when it is tf-keras' regularisation closure of a layer's ``kernel`` (a
    ``functools.partial`` on that variable, closing over the layer's ``kernel_regularizer``) and that
    regulariser is exactly ``keras.regularizers.L2``.
    """
    out = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        kernel = getattr(layer, "kernel", None)
        reg = getattr(layer, "kernel_regularizer", None)
        if kernel is None or type(reg) is not keras.regularizers.L2 or not kernel.trainable:
            continue
        for fn in layer._callable_losses:
            if _regularizes(fn, kernel, reg):
                out[id(fn)] = (kernel, 2.0 * float(reg.l2))
    return out


def _regularizes(fn, variable, regularizer):
    """Whether ``fn`` is tf-keras' closure computing ``regularizer(variable)`` (``add_loss`` wraps it in
    another ``functools.partial``)."""
    while isinstance(fn, functools.partial) and len(fn.args) == 1 and isinstance(fn.args[0], functools.partial):
        fn = fn.args[0]
    if not (isinstance(fn, functools.partial) and len(fn.args) == 1 and fn.args[0] is variable and not fn.keywords):
        return False
    cells = getattr(fn.func, "__closure__", None) or ()
    return any(getattr(cell, "cell_contents", None) is regularizer for cell in cells)


class FoldedUpdate:
    """The loss's regularisation terms and the optimiser update of a training step, with L2 folded in.

    Parameters
    ----------
    model : keras.Model
        A compiled model; its ``optimizer`` applies the update.

    Examples
    --------
    In a ``train_step``::

        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            reg, extra = update.regularization(tape)
            loss = model.compiled_loss(y, y_pred, regularization_losses=reg) + extra
        update.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    """

    def __init__(self, model):
        self.model = model
        self._folded = folded_l2_kernels(model)
        self._coefficient = {id(var): c for var, c in self._folded.values()}
        self._apply = tf.function(self._apply_impl, jit_compile=True, autograph=False)

    @property
    def folded(self):
        """Number of variables whose penalty gradient is folded into the update."""
        return len(self._coefficient)

    def _others(self):
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            for fn in layer._callable_losses:
                if id(fn) not in self._folded:
                    yield fn

    def regularization(self, tape):
        """``(losses, extra)``: ``model.losses`` evaluated without recording the folded penalties' gradient,
        and None or a zero-valued term that carries the gradient of every other regularisation loss (add
        it to the loss)."""
        with tape.stop_recording():
            losses = self.model.losses
        extra = [fn() for fn in self._others()]
        extra = [t - tf.stop_gradient(t) for t in extra if t is not None]
        return losses, (tf.add_n(extra) if extra else None)

    def _apply_impl(self, grads, variables):
        pairs = []
        for g, var in zip(grads, variables):
            c = self._coefficient.get(id(var))
            if c is not None:
                term = tf.cast(c, var.dtype) * var
                g = term if g is None else g + term
            if g is not None:
                pairs.append((g, var))
        self.model.optimizer.apply_gradients(pairs)
        return tf.constant(0)

    def apply(self, grads, variables):
        """Add the folded penalties' gradients to ``grads`` and apply the model's optimiser to ``variables``
        (aligned lists), in one XLA computation."""
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"{len(grads)} gradients for {len(variables)} variables")
        self.model.optimizer.build(variables)
        return self._apply(grads, variables)
