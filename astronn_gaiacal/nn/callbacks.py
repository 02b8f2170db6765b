"""Keras callbacks used inside astroNN's ``fit`` loop."""
import numpy as np

from .._compat import keras

__all__ = ["WeightAveraging"]


class WeightAveraging(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018) over the last epochs of training.

    From epoch ``start_epoch`` (0-based) on, the running mean of the weights at
    the end of every epoch is kept (in float64); when training ends the model
    gets that mean.  With a constant or plateau learning rate the last iterate
    wanders around the minimum; the average sits nearer its centre.  The
    network has no batch normalisation, so nothing needs recomputing.

    Parameters
    ----------
    start_epoch : int
        First epoch averaged.

    Examples
    --------
    >>> cb = WeightAveraging(start_epoch=45)
    >>> cb.get_config()
    {'start_epoch': 45}
    """

    def __init__(self, start_epoch):
        super().__init__()
        if int(start_epoch) != start_epoch or start_epoch < 0:
            raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}")
        self.start_epoch = int(start_epoch)
        self.n_averaged = 0
        self._mean = None

    def get_config(self):
        return {"start_epoch": self.start_epoch}

    def on_train_begin(self, logs=None):
        self.n_averaged, self._mean = 0, None

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch:
            return
        weights = self.model.get_weights()
        self.n_averaged += 1
        if self._mean is None:
            self._mean = [w.astype(np.float64) for w in weights]
        else:
            for m, w in zip(self._mean, weights):
                m += (w - m) / self.n_averaged

    def on_train_end(self, logs=None):
        if self._mean is not None:
            self.model.set_weights([m.astype(w.dtype) for m, w in zip(self._mean, self.model.get_weights())])
