"""astroNN's training hooks of the joint model: compile, the Gaia-likelihood step and the batch pipelines.

:class:`LikelihoodTraining` replaces astroNN's loss hook by one optimisation
step on the Gaia likelihood of the predicted parallax (with the fused CPU
kernels of :mod:`astronn_gaiacal.nn.fused_training` where the graph has them),
and astroNN's Python batch generators by ``tf.data`` pipelines.
"""
import numpy as np
from astroNN.nn.losses import mean_absolute_error, mean_error

from .._compat import keras, tf
from ..nn.batches import training_batches
from ..nn.device import use_fused_kernels
from ..nn.fused_training import call_with_fused_stacks, has_conv_stacks
from ..nn.losses import loss_from_name
from ..nn.noise import TrainingNoise, noise_errors
from ..nn.update import FoldedUpdate
from .calibration import seeded_validation_split

__all__ = ["LikelihoodTraining"]


class LikelihoodTraining:
    """Training of a joint model on Gaia parallaxes (mixed into :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`).

    ``compile`` restores a loaded folder's options (``_restore_plugin_config``),
    builds the graph (``model()``), starts a transferred luminosity network
    (``_start_luminosity``) and compiles with the model's ``loss_name``,
    ``loss_config``, optimiser options and ``jit_compile``.  With the default
    Adam (and no ``jit_compile``) a training step applies it to all variables
    in one XLA computation with the L2 penalties' gradients folded in
    (:class:`~astronn_gaiacal.nn.update.FoldedUpdate`).  The batch
    pipelines wrap astroNN's ``pre_training_checklist_child``, which must come
    after this class in the method resolution order.
    """

    def _loss_function(self):
        loss_obj = loss_from_name(self.loss_name, **self.loss_config)

        def loss_fn(y_true, y_pred):
            return loss_obj.call(y_true, y_pred)

        loss_fn.__name__ = self.loss_name  # saved by name; astroNN's load_folder looks it up
        return loss_fn

    def compile(
        self, optimizer=None, loss=None, metrics=None, weighted_metrics=None, loss_weights=None, sample_weight_mode=None
    ):
        """Build and compile the Keras model (called by astroNN's ``fit`` and ``load_folder``)."""
        self._restore_plugin_config()
        if optimizer is not None:
            self.optimizer = optimizer
            self._compiled_update = False  # a caller's optimiser keeps Keras' own minimize
        elif self.optimizer is None or self.optimizer == "adam":
            self.optimizer = keras.optimizers.Adam(
                learning_rate=self.lr, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.optimizer_epsilon
            )
            # tf-keras compiles the Adam update with XLA only on GPUs; on CPU too the fused update is
            # about 3x faster than its separate element-wise operations (same arithmetic)
            self.optimizer.jit_compile = True
            self._compiled_update = True  # and all variables in one XLA call, L2 folded in (FoldedUpdate)
        self._last_layer_activation = "softplus"
        self.keras_model, self.keras_model_predict = self.model()
        self._start_luminosity()
        self.recompile()
        self._fused_stacks = bool(not self.jit_compile and has_conv_stacks(self.keras_model)
                                  and use_fused_kernels(self.train_fused, "training"))
        folded = getattr(self, "_compiled_update", False) and not self.jit_compile
        self._update = FoldedUpdate(self.keras_model) if folded else None

    def recompile(self, weighted_metrics=None, loss_weights=None, sample_weight_mode=None):
        """Compile the built Keras model with the Gaia likelihood and this class's training step."""
        self.keras_model.compile(
            optimizer=self.optimizer, loss=self._loss_function(), metrics={"output": [mean_absolute_error, mean_error]},
            jit_compile=bool(self.jit_compile),
        )
        self.keras_model.train_step = self.custom_train_step
        self.keras_model.test_step = self.custom_test_step

    def _step_loss(self, data, training, tape=None):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._fused_stacks:
            plx, plx_logvar = call_with_fused_stacks(self.keras_model, x["input"])
        else:
            plx, plx_logvar = self.keras_model(x["input"], training=training)
        sigma = tf.reshape(tf.cast(x["labels_err"], plx.dtype), tf.shape(plx))
        y_true = tf.concat([tf.cast(y["output"], plx.dtype), sigma], axis=-1)
        y_pred = tf.concat([plx, plx_logvar], axis=-1)
        if tape is not None and self._update is not None:  # the L2 gradients are added in the update
            regularization, extra = self._update.regularization(tape)
        else:
            regularization, extra = self.keras_model.losses, None
        loss = self.keras_model.compiled_loss(y_true, y_pred, sample_weight, regularization_losses=regularization)
        if extra is not None:
            loss = loss + extra
        return loss, y, [plx, plx_logvar], sample_weight

    def _metric_results(self):
        results = {}
        for metric in self.keras_model.metrics:
            value = metric.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[metric.name] = value
        return results

    def custom_train_step(self, data):
        """One optimisation step on the Gaia likelihood (replaces astroNN's loss hook)."""
        with tf.GradientTape() as tape:
            loss, y, y_pred, sample_weight = self._step_loss(data, training=True, tape=tape)
        variables = self.keras_model.trainable_variables
        if self._update is None:
            self.keras_model.optimizer.minimize(loss, variables, tape=tape)
        else:
            self._update.apply(tape.gradient(loss, variables), variables)
        self.keras_model.compiled_metrics.update_state(y, y_pred, sample_weight)
        return self._metric_results()

    def custom_test_step(self, data):
        _, y, y_pred, sample_weight = self._step_loss(data, training=False)
        self.keras_model.compiled_metrics.update_state(y, y_pred, sample_weight)
        return self._metric_results()

    def _training_noise(self):
        """The training stars' :class:`~astronn_gaiacal.nn.noise.TrainingNoise` (``training_noise_snr``), or None."""
        source = getattr(self, "_noise_source", None)
        if source is None:
            return None
        err, snr = source
        rows = np.asarray(self.train_idx)
        std = np.asarray(self.input_std["input"], float).ravel()
        scale = std[: err.shape[1]] if std.size > 1 else None
        return TrainingNoise(noise_errors(err[rows], scale), snr[rows], self.training_noise_snr,
                             seed=int(np.random.randint(0, 2**31 - 1)), columns=err.shape[1] + 1 + self.n_features)

    def pre_training_checklist_child(self, input_data, labels, sample_weight):
        """astroNN's checklist (its validation split seeded), then its batch generators replaced by ``tf.data`` pipelines.

        The same batches as astroNN's (``n_train // batch_size`` per epoch in a new
        random order each epoch, validation in order) from
        :func:`~astronn_gaiacal.nn.batches.training_batches`: gathered in-graph from
        arrays shared with NumPy, without astroNN's float64 copies or its unused
        ``input_err``.
        """
        input_std = self.input_std
        if isinstance(input_std, dict) and input_data["input_err"].shape[1] == 1:
            # fit()'s zero column: astroNN divides it by the input std, which would make it full size
            self.input_std = {**input_std, "input": np.ones(1)}
        try:
            with seeded_validation_split(self.validation_seed):  # every member of an ensemble holds out the same stars
                out = super().pre_training_checklist_child(input_data, labels, sample_weight)
        finally:
            self.input_std = input_std
        self.validation_split = None
        if self.has_val:
            seed = self.validation_seed
            self.validation_split = {"n_stars": int(self.num_train + self.val_num), "val_size": float(self.val_size),
                                     "seed": None if seed is None else int(seed)}
            if seed is None:  # astroNN's own random split: keep its stars
                self.validation_split["indices"] = np.sort(self.val_idx).astype(int).tolist()
        norm_train, norm_val, labels_train, labels_val, weight_train, weight_val = out
        gen = self.training_generator
        self.training_generator, shared = training_batches(norm_train, labels_train, weight_train, gen.batch_size,
                                                           len(gen), shuffle=True, noise=self._training_noise())
        norm_train = {**norm_train, "input": shared}  # astroNN keeps what it gets back: one copy, not two
        if self.has_val:
            val = self.validation_generator
            self.validation_generator, shared = training_batches(norm_val, labels_val, weight_val, val.batch_size,
                                                                 len(val), shuffle=False)
            norm_val = {**norm_val, "input": shared}
        return norm_train, norm_val, labels_train, labels_val, weight_train, weight_val

