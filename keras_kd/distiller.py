"""`Distiller`: a `keras.Model` that trains a student to match a frozen teacher.

The parts it composes live in their own modules: the objective and the resolution of
`compile`'s loss arguments (`keras_kd.objective`, `keras_kd.terms`), what a step reads (the
augmented batch, stored or live teacher outputs, first-batch checks: `keras_kd.step_inputs`),
what it logs (`keras_kd.tracking`) and the steps per execution of `fit` (`keras_kd.execution`).
"""

import functools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd import augment as augment_lib
from keras_kd import checks
from keras_kd import compat
from keras_kd import distribute
from keras_kd import execution
from keras_kd import features
from keras_kd import fit_arrays
from keras_kd import losses as kd_losses
from keras_kd import objective as objective_lib
from keras_kd import precision
from keras_kd import reduction
from keras_kd import step_inputs
from keras_kd import terms as terms_lib
from keras_kd import tracking
from keras_kd.execution import AUTO_STEPS_PER_EXECUTION  # noqa: F401 (documented here)
from keras_kd.objective import DEFAULT_ALPHA
from keras_kd.objective import DEFAULT_TEMPERATURE
from keras_kd.objective import EpochHook
from keras_kd.objective import Objective
from keras_kd.teachers import TeacherEnsemble
from keras_kd.teachers import split_cached


@keras.saving.register_keras_serializable(package="keras_kd")
class Distiller(keras.Model):
    """Knowledge distillation (Hinton et al., 2015) as a `keras.Model`.

    The student learns from the labels and from the teacher's temperature-softened outputs:

        loss = alpha * hard + (1 - alpha) * distillation

    or, with `terms` (`keras_kd.terms`: KD, DKD, FitNets hints, attention transfer),

        loss = alpha * hard + sum_i weight_i * term_i

    where a term whose weight is `None` (as `terms.Logits()`'s default) weighs `1 - alpha`,
    so `terms=[terms.Logits()]` is the classic objective, logged as `kd_loss` instead of
    `distillation_loss`; each term's value is logged under its name (see `keras_kd.terms`).
    `hard = student_loss_fn(y, student_logits)` and by default
    `distillation = T**2 * KL(softmax(teacher_logits / T) || softmax(student_logits / T))`.
    Each term is a mean over the global batch, weighted by `sample_weight` when given
    (`sum(w * l) / batch_size`, Keras' "sum_over_batch_size"), and stays so under any
    `tf.distribute` strategy. `fit` logs `loss`, `hard_loss`, `distillation_loss` and the
    compiled metrics (computed on the student's logits) with their true values.

    The teacher is frozen (`teacher.trainable = False`), runs once per step with
    `training=False` outside the gradient tape, so BatchNorm statistics and Dropout stay in
    inference mode. `call`, `predict` and `evaluate`'s metrics use the student.

    Callbacks that monitor `hard_loss` or `distillation_loss` (EarlyStopping,
    ModelCheckpoint) need `mode="min"`: Keras infers the direction only for `loss` and its
    own compiled metrics, as with the per-output losses of a multi-output model.

    `alpha` follows the keras.io convention: it weighs the *hard-label* loss. Some texts
    (e.g. write-ups that weigh the soft loss by alpha) use the opposite convention.

    Unlabelled transfer sets (`fit(x)` with no `y`, Hinton et al.'s setting) need `alpha=0`:
    the loss is then the distillation loss alone, `hard_loss` is logged as 0 and the compiled
    metrics, which need labels, are not logged.

    On the first batch of each `fit`/`evaluate` input (arrays or `tf.data`), both models run
    once eagerly: this builds a subclassed student, and refuses probability outputs, several
    outputs, class counts that differ and labels out of range, each with an error naming
    the model (`keras_kd.step_inputs.check_first_batch`, `keras_kd.checks.first_batch`).

    Args:
        student: the `keras.Model` to train; it must output logits (no softmax).
        teacher: a trained, built `keras.Model` outputting logits, or a list of them (an
            equal-weight `TeacherEnsemble` of their logits).
        terms: a list of `keras_kd.terms.Term`s (distinct names). `None` (default): one KD
            term named `distillation_loss`, configured by `compile(distillation_loss_fn=...,
            temperature=...)`. Terms that read named layers need Functional or Sequential
            models; each model still runs once per step (`keras_kd.features.view`).
        teacher_preprocessing: a Keras layer or function applied to the (augmented) batch
            before the teacher only, e.g. a resize or a `keras.applications` model's
            `preprocess_input`, for a teacher that expects other inputs than the student.
        augment: Keras image augmentation layers (`RandomFlip`, `RandomTranslation`,
            `RandomCrop`, ..., `MixUp`, `CutMix`; a list, a `keras.Sequential` or a
            `keras_kd.augment.Augmentation`) applied in `train_step` once per batch; teacher
            and student see the same augmented tensor (Beyer et al. 2022). Batch `k` of a run
            is augmented with the seed `(augment_seed, k)`. With MixUp/CutMix the hard-label
            loss uses the mixed labels. Not applied in `evaluate`/`predict`.
        augment_seed: integer seed of the augmentation; `None` draws one (reproducible after
            `keras.utils.set_random_seed`).
        teacher_dtype: `"bfloat16"` or `"float16"` runs only the teacher in reduced precision
            (a copy under a mixed policy with the same weights, `keras_kd.precision.teacher_in`;
            Keras' global policy and the student are untouched); None/`"float32"`: as given.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Raises:
        ValueError: if a model is not a `keras.Model`, ends with a softmax, or the teacher is
            not built.

    Example:

    ```python
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=4.0)
    distiller.fit(x_train, y_train, epochs=5, validation_data=(x_test, y_test))
    distiller.student.save("student.keras")
    ```
    """

    def __init__(self, student, teacher, terms=None, teacher_preprocessing=None, augment=None,
                 augment_seed=None, teacher_dtype=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(teacher, (list, tuple)):
            teacher = TeacherEnsemble(teacher)
        # with teacher_preprocessing, the teacher may take another input shape
        checks.student_and_teacher(student, teacher, teacher_preprocessing is None)
        teacher.trainable = False
        self.teacher_dtype = teacher_dtype
        self.student = student
        self.teacher = precision.teacher_in(teacher, teacher_dtype)
        self.augment = augment_lib.for_models(augment, student, teacher)
        if augment_seed is None:
            augment_seed = int(np.random.randint(0, 2**31 - 1))
        self.augment_seed = checks.non_negative_int("augment_seed", augment_seed)
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.alpha = DEFAULT_ALPHA
        self.temperature = DEFAULT_TEMPERATURE
        self.student_loss_fn = None
        self.distillation_loss_fn = kd_losses.KLDivergence(temperature=self.temperature)
        self.has_terms = terms is not None
        if terms is None:
            terms = [terms_lib.Logits(self.distillation_loss_fn, name="distillation_loss")]
        self.objective = Objective(terms, alpha=self.alpha)
        self._views = self.objective.connect(self.teacher, student)
        self.term_trackers = [keras.metrics.Mean(name=name) for name in self.objective.names]
        self.teacher_preprocessing = teacher_preprocessing
        self._first_batches = step_inputs.FirstBatches()
        if student.built:
            self.built = True

    def compile(
        self,
        optimizer="adam",
        metrics=None,
        student_loss_fn=None,
        distillation_loss_fn=None,
        alpha=DEFAULT_ALPHA,
        temperature=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution="auto",
        jit_compile="auto",
        auto_scale_loss=True,
        **kwargs,
    ):
        """Configures the distillation.

        Args:
            optimizer: optimizer name or instance, as in `keras.Model.compile`.
            metrics: metrics of the student's logits against the labels (e.g. `["accuracy"]`).
            student_loss_fn: hard-label loss: a `keras.losses.Loss`, a function returning one
                value per example, or `"sparse_categorical_crossentropy"` /
                `"categorical_crossentropy"` / `"binary_crossentropy"` (all taken
                `from_logits=True`). `None` picks sparse or categorical cross-entropy on
                logits from the labels' shape, or binary cross-entropy on logits for a
                one-logit student (0/1 labels; for its accuracy use
                `keras.metrics.BinaryAccuracy(threshold=0.0)`: the outputs are logits).
            distillation_loss_fn: a `keras_kd.losses` loss (or name: `"kl_divergence"`,
                `"soft_target_crossentropy"`, `"logits_mse"`), a Keras probability loss such
                as `keras.losses.KLDivergence()` (applied to both models' softmax at `T`,
                times `T**2`: see `keras_kd.losses.SoftenedKerasLoss`), or any
                `(teacher_logits, student_logits) -> per-example loss` on raw logits.
                Default: `keras_kd.losses.KLDivergence()` (times `T**2`).
            alpha: weight in [0, 1] of the hard-label loss; `1 - alpha` weighs the
                distillation loss. Default 0.1.
            temperature: softening temperature `T > 0` for temperature losses. `None` keeps
                the loss's own temperature, or 4.0 if it has none. A loss that applies no
                temperature (`logits_mse`, a plain callable) records `temperature=None`
                (with a warning if one was given).
            steps_per_execution: training steps per call into TensorFlow. `"auto"` (default)
                runs `AUTO_STEPS_PER_EXECUTION` (64) steps per call, 1 when `run_eagerly` or
                under a tf.distribute strategy (see `keras_kd.execution`). Batch-level
                callbacks and the progress bar then see every 64th step; epoch logs are
                unchanged. The compile config stores the value given ("auto"), resolved
                again when reloaded.
            weighted_metrics, run_eagerly, jit_compile, auto_scale_loss: as in
                `keras.Model.compile`.

        Raises:
            ValueError: for an invalid argument, or for `loss=` (use `student_loss_fn`).
        """
        checks.no_other_compile_arguments(kwargs)
        self.alpha = objective_lib.check_alpha(alpha)
        temperature = kd_losses.logits.check_temperature(temperature)
        distributed = compat.distribute_strategy(self) is not None or tf.distribute.has_strategy()
        self._auto_steps_per_execution = steps_per_execution == "auto"
        requested_steps = steps_per_execution  # stored as given: "auto" resolves per compile
        steps_per_execution = execution.resolve(steps_per_execution, run_eagerly, distributed)
        # None: sparse or categorical cross-entropy, chosen from the labels' shape at trace time
        self.student_loss_fn = objective_lib.student_loss(student_loss_fn)
        distillation_loss_fn, temperature = objective_lib.logits_loss(
            distillation_loss_fn, temperature, terms_given=self.has_terms,
            ensemble_temperature=self.teacher.temperature
            if isinstance(self.teacher, TeacherEnsemble) else None)
        self.temperature = temperature
        self.distillation_loss_fn = distillation_loss_fn
        if not self.has_terms:
            self.objective.terms[0].set_loss(distillation_loss_fn)
        self.objective.configure(self.alpha, temperature or DEFAULT_TEMPERATURE)
        self._executions = fit_arrays.Executions()  # compiled loops of `fit` on held data
        super().compile(
            optimizer=optimizer,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            run_eagerly=run_eagerly,
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
            auto_scale_loss=auto_scale_loss,
        )
        self._kd_compile_args = dict(
            optimizer=self.optimizer,
            metrics=metrics,
            student_loss_fn=student_loss_fn,
            distillation_loss_fn=None if self.has_terms else distillation_loss_fn,
            alpha=self.alpha,
            temperature=temperature,
            weighted_metrics=weighted_metrics,
            run_eagerly=run_eagerly,
            steps_per_execution=requested_steps,
            jit_compile=jit_compile,
        )

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {k: keras.saving.serialize_keras_object(v) for k, v in self._kd_compile_args.items()}

    def compile_from_config(self, config):
        self.compile(**{k: keras.saving.deserialize_keras_object(v) for k, v in config.items()})
        if self.built:
            self.optimizer.build(self.trained_variables)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """As `keras.Model.fit`, with three differences:
        - arrays (numpy or dense tensors) are read through `keras_kd.data.array_batches`
          (see `keras_kd.fit_arrays`): Keras' own checks, batches and validation split, but
          a new shuffle order every epoch under `keras.utils.set_random_seed` and no wait
          for tf.data's autotuner between epochs. With several steps per execution (the
          default) and no `steps_per_epoch`, the same batches are gathered inside the
          compiled execution from the arrays held in memory, without a `tf.data` element
          per step (`fit_arrays.ExecutionBlocks`); so is an in-memory
          `keras_kd.teachers.cache_logits` dataset;
        - with `steps_per_epoch` and `steps_per_execution="auto"`, the steps per execution
          become the largest divisor of `steps_per_epoch` <= 64: Keras 3.15 otherwise runs
          whole executions on repeated datasets (64 steps for `steps_per_epoch=3`); see
          `keras_kd.execution.for_epoch`;
        - terms' warm-ups follow the epochs through a callback added here."""
        args = fit_arrays.fit_arguments(dict(
            x=x, y=y, batch_size=batch_size, validation_split=validation_split,
            validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
            sample_weight=sample_weight, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, validation_batch_size=validation_batch_size),
            steps_per_execution=self._steps_per_block())
        callbacks = [*(callbacks or []), EpochHook(self.objective)]
        if steps_per_epoch and getattr(self, "_auto_steps_per_execution", False):
            wanted = execution.for_epoch(steps_per_epoch, self.steps_per_execution)
            if wanted != self.steps_per_execution:
                self.steps_per_execution = wanted
                self.train_function = None  # rebuilt with the new count on the next fit
        fit = functools.partial(super().fit, epochs=epochs, verbose=verbose, callbacks=callbacks,
                                initial_epoch=initial_epoch, validation_freq=validation_freq)
        blocks = args["x"]
        if not isinstance(blocks, fit_arrays.ExecutionBlocks):
            return fit(**args)
        # Keras' fit takes `self.train_function` as it finds it; its own comes back afterwards
        keras_function = self.train_function
        self.train_function = self._executions.train_function(self, blocks)
        try:
            return fit(**{**args, "x": blocks.dataset})
        finally:
            self.train_function = keras_function

    def _steps_per_block(self):
        """Steps per execution `fit` may read arrays or an in-memory cache in
        (`fit_arrays.ExecutionBlocks`): the compiled count, or 1 (no blocks) when running
        eagerly or under a strategy, where Keras' own loop and distributed datasets are
        kept."""
        if self.run_eagerly or compat.distribute_strategy(self) is not None or (
                tf.distribute.has_strategy()):
            return 1
        return self.steps_per_execution

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        """As `keras.Model.evaluate`; arrays are read through `keras_kd.data.array_batches`,
        unshuffled (Keras' own batches, without the autotuner's wait at the end)."""
        if not kwargs.get("_use_cached_eval_dataset"):  # fit's validation: already a dataset
            x, y, sample_weight, batch_size = fit_arrays.unshuffled(
                x, y, sample_weight, batch_size, steps)
        return super().evaluate(x, y, batch_size=batch_size, verbose=verbose,
                                sample_weight=sample_weight, steps=steps, callbacks=callbacks,
                                return_dict=return_dict, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """As `keras.Model.predict` (the student's logits); arrays are read through
        `keras_kd.data.array_batches`, unshuffled, as in `evaluate`."""
        x, _, _, batch_size = fit_arrays.unshuffled(x, batch_size=batch_size, steps=steps)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                               callbacks=callbacks)

    def call(self, inputs, training=False):
        inputs, _ = split_cached(inputs)
        return self.student(inputs, training=training)

    @property
    def trained_variables(self):
        """The variables the optimizer trains: the student's and the terms' adapters'."""
        return self.student.trainable_variables + self.objective.trainable_variables

    # ----------------------------------------------------------------- losses
    def compute_distillation_losses(self, y, teacher_logits, student_logits, sample_weight=None):
        """Returns `(loss_for_gradient, logs)` for one (per-replica) batch.

        `teacher_logits` and `student_logits` are the models' logits, or dicts of them
        (under `"logits"`) and of the layers the terms read. `logs` holds the local means
        of `loss`, `hard_loss` and each term (`distillation_loss` without `terms`) and the
        local example count; `loss_for_gradient` is this replica's share of the global-batch
        mean (plus the student's regularisation losses), ready for `tape.gradient`.
        """
        total_sum, regularization, logs = self._local_losses(
            y, teacher_logits, student_logits, sample_weight
        )
        # The one collective of the loss: the global example count (uneven last batches).
        loss_for_gradient = ops.divide_no_nan(total_sum, reduction.global_count(logs["count"]))
        loss_for_gradient += regularization / reduction.num_replicas()
        return loss_for_gradient, logs

    def _local_losses(self, y, teacher_logits, student_logits, sample_weight):
        """`(weighted loss sum, regularisation, logs)` of this replica's batch, no collective."""
        teacher = features.as_outputs(teacher_logits)  # losses in float32 under mixed precision
        student = features.as_outputs(student_logits)
        checks.labels_given(y, self.alpha)
        total_sum, logs = self.objective.local_losses(
            self.student_loss_fn, y, teacher, student, sample_weight)
        regularization = ops.cast(sum(self.student.losses), "float32") if self.student.losses else 0.0
        logs["loss"] = logs["loss"] + regularization
        return total_sum, regularization, logs

    def teacher_logits(self, x):
        """The teacher's outputs for `x`, in inference mode and without gradient."""
        return self.teacher_outputs(x)[features.LOGITS]

    def teacher_outputs(self, x):
        """`{"logits": ..., layer: ...}` of the teacher (after `teacher_preprocessing`) for
        `x`: inference mode, float32, no gradient. A `TeacherEnsemble` mixes its members'
        distributions at the Distiller's temperature."""
        return step_inputs.live_teacher_outputs(
            self._views.teacher, x, self.teacher_preprocessing, self.temperature)

    def _teacher_outputs_for(self, x, cached):
        """Stored outputs (`keras_kd.teachers.cache_logits`, replayed views) or the live teacher's."""
        if cached is None:
            return self.teacher_outputs(x)
        return step_inputs.stored_teacher_outputs(cached, self.objective)

    # ------------------------------------------------------------------ steps
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, cached = step_inputs.training_batch(
            x, y, self.augment, self.augment_seed, self.optimizer.iterations)
        teacher = self._teacher_outputs_for(x, cached)
        with tf.GradientTape() as tape:
            student = features.outputs_of(self._views.student, x, training=True)
            loss, logs = self.compute_distillation_losses(y, teacher, student, sample_weight)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trained_variables  # after the call: it builds a subclassed student
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        tracking.update(self, logs)
        return tracking.step_logs(self, x, y, student[features.LOGITS], sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = split_cached(x)
        teacher = self._teacher_outputs_for(x, cached)
        student = features.outputs_of(self._views.student, x, training=False)
        _, _, logs = self._local_losses(y, teacher, student, sample_weight)
        tracking.update(self, logs)
        return tracking.step_logs(self, x, y, student[features.LOGITS], sample_weight)

    def get_metrics_result(self):
        return tracking.metrics_result(self)  # without labels, no compiled metrics

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # each new input's first batch runs both models eagerly (`keras_kd.step_inputs`)
        self._first_batches.check(self._check_first_batch, iterator, data_batch)
        # Keras 3 fails here under MultiWorkerMirroredStrategy: see
        # `keras_kd.distribute.symbolic_build_from_one_replica`.
        if compat.distribute_strategy(self) is None or iterator is None or data_batch is not None:
            return compat.maybe_symbolic_build(super(), iterator, data_batch)
        distribute.symbolic_build_from_one_replica(self, iterator)

    def _check_first_batch(self, batch):
        step_inputs.check_first_batch(batch, self.student, self.teacher,
                                      self.teacher_preprocessing, self.alpha)

    # ------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            student=keras.saving.serialize_keras_object(self.student),
            teacher=keras.saving.serialize_keras_object(self.teacher),
            terms=[keras.saving.serialize_keras_object(t) for t in self.objective.terms]
            if self.has_terms else None,
            teacher_preprocessing=None if self.teacher_preprocessing is None
            else keras.saving.serialize_keras_object(self.teacher_preprocessing),
            augment=None if self.augment is None else keras.saving.serialize_keras_object(
                self.augment),
            augment_seed=self.augment_seed,
            teacher_dtype=self.teacher_dtype,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        for key in ("terms", "teacher_preprocessing", "augment"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
