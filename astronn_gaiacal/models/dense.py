"""Dense joint model for low-dimensional inputs (Gaia XP coefficients, stellar labels)."""
from .._compat import keras
from ..registry import register
from .base import GaiaCalBCNNBase


@register
class DenseGaiaBNN(GaiaCalBCNNBase):
    """Joint model whose luminosity network is a dense MLP.

    For a few to a few hundred inputs per star, e.g. Gaia XP coefficients or
    stellar labels (Teff, log g, [Fe/H]).  The number of inputs is set by the
    first ``fit``; inputs are standardised (mean and standard deviation).

    Parameters
    ----------
    hidden : sequence of int
        Widths of the dense layers (ReLU, MC dropout after each).
    **kwargs
        See :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`.

    Examples
    --------
    >>> from astronn_gaiacal.models import DenseGaiaBNN
    >>> DenseGaiaBNN(hidden=(64, 32)).hidden
    [64, 32]
    """

    spectrum_length = None
    standardize_spectra = True

    def __init__(self, hidden=(128, 64), **kwargs):
        super().__init__(**kwargs)
        self.num_hidden = [*(int(h) for h in hidden), *self.offset_hidden]

    @property
    def hidden(self):
        """Widths of the dense luminosity layers."""
        return self.luminosity_hidden

    def luminosity_network(self, inputs):
        reg = keras.regularizers.l2(self.l2)
        x = inputs
        for units in self.luminosity_hidden:
            x = keras.layers.Dense(units, kernel_initializer=self._initializer(), kernel_regularizer=reg)(x)
            x = self._dropout(keras.layers.Activation(self.activation)(x))
        return self._luminosity_heads(x)
