"""Registration of the plugin's components in the namespaces astroNN searches.

``astroNN.models.load_folder`` finds a model class only as an attribute of
``astroNN.models`` and a loss only as a name in ``astroNN.nn.losses``.  The
:func:`register` decorator puts a class or function there, and into Keras'
serialisation registry, without ever replacing one of astroNN's own objects.

Registration is lazy and never imports astroNN by itself: a component
registered before astroNN's module is imported waits in a queue, and is put in
place by an import hook (``astronn_gaiacal._compat.on_import``) right after
``astroNN.models``, ``astroNN.nn.layers`` or ``astroNN.nn.losses`` has been
imported, before any ``load_folder`` call can look for it.  The package's own
components are defined, and so registered, by importing
:mod:`astronn_gaiacal.nn` and :mod:`astronn_gaiacal.models`; ``import
astronn_gaiacal`` arranges for that to happen as soon as ``astroNN.models`` is
imported, and :func:`registered` does it on demand.

Examples
--------
>>> from astronn_gaiacal import register
>>> from astronn_gaiacal.models import ApogeeGaiaBCNN
>>> @register
... class MySurveyBCNN(ApogeeGaiaBCNN):
...     spectrum_length = 4000
>>> import astroNN.models
>>> astroNN.models.MySurveyBCNN is MySurveyBCNN
True
"""
import inspect
import sys
import warnings

from . import _compat

KERAS_PACKAGE = "astronn_gaiacal"

#: name -> object, for everything registered through :func:`register`
_REGISTERED = {"models": {}, "losses": {}, "layers": {}}

#: The astroNN module each kind is registered in.
NAMESPACES = {"models": "astroNN.models", "losses": "astroNN.nn.losses", "layers": "astroNN.nn.layers"}

#: Registered while their astroNN module was not imported yet: kind -> {name: object}.
_PENDING = {kind: {} for kind in _REGISTERED}

#: Callables that define (import) components on demand; see :func:`on_demand`.
_DEFINERS = []


def _kind(obj):
    keras_loaded = "tensorflow" in sys.modules or "tf_keras" in sys.modules  # a Keras class implies it
    if inspect.isclass(obj) and keras_loaded and issubclass(obj, _compat.keras.layers.Layer):
        return "layers"
    if (inspect.isclass(obj) and keras_loaded and issubclass(obj, _compat.keras.losses.Loss)) or (
        callable(obj) and not inspect.isclass(obj)
    ):
        return "losses"
    if inspect.isclass(obj) and "astroNN.models.base_master_nn" in sys.modules:
        # an astroNN model class implies astroNN is loaded
        from astroNN.models.base_master_nn import NeuralNetMaster

        if issubclass(obj, NeuralNetMaster):
            return "models"
    raise TypeError(
        f"register() takes an astroNN model class, a Keras layer class, a Keras loss "
        f"class or a loss function; got {obj!r}"
    )


def _refuse_shadowing(namespace, name, obj, kind):
    existing = getattr(namespace, name, None)
    if existing is not None and existing is not obj and _REGISTERED[kind].get(name) is not existing:
        raise ValueError(
            f"cannot register {obj!r} as {namespace.__name__}.{name}: that name already "
            f"belongs to {existing!r}, which astronn_gaiacal must not shadow; rename the class"
        )


def _set_once(namespace, name, obj, kind):
    _refuse_shadowing(namespace, name, obj, kind)
    setattr(namespace, name, obj)
    if kind == "models" and name not in namespace.__all__:
        namespace.__all__.append(name)


def _flush(kind):
    """Put the components waiting for ``NAMESPACES[kind]`` in place (the import hook)."""

    def after_import(namespace):
        pending = _PENDING[kind]
        while pending:
            name, obj = pending.popitem()
            try:
                _set_once(namespace, name, obj, kind)
            except ValueError as err:  # inside someone's import: warn rather than break it
                _REGISTERED[kind].pop(name, None)
                warnings.warn(str(err), stacklevel=2)

    return after_import


def on_demand(definer):
    """Have :func:`registered` call ``definer()`` first (it imports modules that register components)."""
    if definer not in _DEFINERS:
        _DEFINERS.append(definer)
    return definer


def register(obj=None, *, name=None):
    """Register a model class, layer, or loss with astroNN and Keras.

    Parameters
    ----------
    obj : class or callable
        An astroNN model class (subclass of ``NeuralNetMaster``), a Keras
        layer class, a Keras loss class or a loss function ``f(y_true, y_pred)``.
    name : str, optional
        Name to register under; defaults to ``obj.__name__``.

    Returns
    -------
    obj
        Unchanged, so ``register`` works as a decorator.

    Raises
    ------
    ValueError
        If the name already belongs to one of astroNN's own objects.
    TypeError
        If ``obj`` is none of the kinds above.
    """
    if obj is None:
        return lambda o: register(o, name=name)
    kind = _kind(obj)
    reg_name = name or obj.__name__
    namespace = sys.modules.get(NAMESPACES[kind])
    if namespace is not None:
        _refuse_shadowing(namespace, reg_name, obj, kind)  # before touching Keras' registry
    if kind in ("layers", "losses"):
        keras = _compat.keras
        custom = keras.utils.get_custom_objects()
        if inspect.isclass(obj):
            key = f"{KERAS_PACKAGE}>{reg_name}"
            if custom.get(key) is not obj:
                custom.pop(key, None)
                keras.utils.register_keras_serializable(package=KERAS_PACKAGE, name=reg_name)(obj)
        else:
            # plain name: Keras then serialises the function as its name, which is
            # exactly what astroNN's load_folder looks up in astroNN.nn.losses
            custom[reg_name] = obj
    if namespace is not None:
        _set_once(namespace, reg_name, obj, kind)
    else:  # astroNN not imported yet: the import hook puts it in place
        _PENDING[kind][reg_name] = obj
        _compat.on_import(NAMESPACES[kind], after=_FLUSHERS[kind])
    _REGISTERED[kind][reg_name] = obj
    return obj


_FLUSHERS = {kind: _flush(kind) for kind in _REGISTERED}


def registered(kind="models"):
    """Names and objects registered through :func:`register`.

    Parameters
    ----------
    kind : {'models', 'losses', 'layers'}

    Returns
    -------
    dict
        ``{name: object}``, sorted by name.
    """
    if kind not in _REGISTERED:
        raise ValueError(f"kind must be one of {sorted(_REGISTERED)}, got {kind!r}")
    for definer in list(_DEFINERS):
        definer()
    return dict(sorted(_REGISTERED[kind].items()))


def get_model_class(name):
    """Look up a registered model class by name.

    Raises
    ------
    KeyError
        With the list of known names, if ``name`` is not registered.
    """
    models = registered("models")
    if name not in models:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(models) or 'none'}")
    return models[name]


def get_loss(name):
    """Look up a registered loss by name (function or Loss class)."""
    losses = registered("losses")
    if name not in losses:
        raise KeyError(f"unknown loss {name!r}; registered losses: {', '.join(losses)}")
    return losses[name]
