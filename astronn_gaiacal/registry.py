"""Registration of the plugin's components in the namespaces astroNN searches.

``astroNN.models.load_folder`` finds a model class only as an attribute of
``astroNN.models`` and a loss only as a name in ``astroNN.nn.losses``.  The
:func:`register` decorator puts a class or function there, and into Keras'
serialisation registry, without ever replacing one of astroNN's own objects.

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

from ._compat import keras

KERAS_PACKAGE = "astronn_gaiacal"

#: name -> object, for everything registered through :func:`register`
_REGISTERED = {"models": {}, "losses": {}, "layers": {}}


def _kind(obj):
    from astroNN.models.base_master_nn import NeuralNetMaster

    if inspect.isclass(obj) and issubclass(obj, NeuralNetMaster):
        return "models"
    if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
        return "layers"
    if (inspect.isclass(obj) and issubclass(obj, keras.losses.Loss)) or (
        callable(obj) and not inspect.isclass(obj)
    ):
        return "losses"
    raise TypeError(
        f"register() takes an astroNN model class, a Keras layer class, a Keras loss "
        f"class or a loss function; got {obj!r}"
    )


def _namespace(kind):
    if kind == "models":
        import astroNN.models as ns
    elif kind == "losses":
        import astroNN.nn.losses as ns
    else:
        import astroNN.nn.layers as ns
    return ns


def _set_once(namespace, name, obj, kind):
    existing = getattr(namespace, name, None)
    if existing is not None and existing is not obj and _REGISTERED[kind].get(name) is not existing:
        raise ValueError(
            f"cannot register {obj!r} as {namespace.__name__}.{name}: that name already "
            f"belongs to {existing!r}, which astronn_gaiacal must not shadow; rename the class"
        )
    setattr(namespace, name, obj)
    _REGISTERED[kind][name] = obj


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
    if kind in ("layers", "losses"):
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
    _set_once(_namespace(kind), reg_name, obj, kind)
    if kind == "models":
        import astroNN.models as ns

        if reg_name not in ns.__all__:
            ns.__all__.append(reg_name)
    return obj


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
