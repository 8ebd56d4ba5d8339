"""`Distiller`: a `keras.Model` that trains a student to match a frozen teacher."""

import numbers
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd import augment as augment_lib
from keras_kd import checks
from keras_kd import compat
from keras_kd import distribute
from keras_kd import features
from keras_kd import losses as kd_losses
from keras_kd import precision
from keras_kd import reduction
from keras_kd import terms as terms_lib
from keras_kd.objective import EpochHook
from keras_kd.objective import Objective
from keras_kd.teachers import TeacherEnsemble
from keras_kd.teachers import split_batch
from keras_kd.teachers import split_cached

AUTO_STEPS_PER_EXECUTION = 64
DEFAULT_ALPHA = 0.1
DEFAULT_TEMPERATURE = 4.0

# Student-loss names resolved to *logit* losses: `keras.losses.get(name)` would return the
# probability version (`from_logits=False`) and silently mistreat the student's logits.
_STUDENT_LOSSES = {
    "sparse_categorical_crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True
    ),
    "categorical_crossentropy": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
    "binary_crossentropy": lambda: keras.losses.BinaryCrossentropy(from_logits=True),
}


def _steps_per_execution_for(steps_per_epoch, current):
    """The largest divisor of `steps_per_epoch` that is <= `AUTO_STEPS_PER_EXECUTION`.

    Keras 3.15's multi-step loop runs whole executions when `fit` gets `steps_per_epoch` on a
    repeated dataset: steps_per_execution=64 with steps_per_epoch=3 runs 64 steps an epoch
    (tests/test_views.py). A divisor keeps every epoch exact."""
    if current == 1:
        return 1
    steps = int(steps_per_epoch)
    return max(d for d in range(1, min(steps, AUTO_STEPS_PER_EXECUTION) + 1) if steps % d == 0)


def _output_width(model):
    """The number of logits of a built Functional model (or an ensemble of them), else None."""
    members = getattr(model, "teachers", [model])
    outputs = [getattr(m, "outputs", None) for m in members]
    widths = {o[0].shape[-1] for o in outputs if o}
    return widths.pop() if len(widths) == 1 else None


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(
            "Invalid value for argument `alpha`. Expected a number in [0, 1] (the weight of "
            f"the hard-label loss). Received: alpha={alpha!r}"
        )
    return float(alpha)


def _nothing():
    return None


def _unreduced(loss_fn, y_true, y_pred):
    """Per-example values of a Keras `Loss` (its `call`, bypassing its reduction) or a function."""
    if isinstance(loss_fn, keras.losses.Loss):
        y_true = ops.convert_to_tensor(y_true, dtype=loss_fn.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=loss_fn.dtype)
        return loss_fn.call(y_true, y_pred)
    return loss_fn(y_true, y_pred)


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

    On the first batch of every `fit`/`evaluate` (arrays or `tf.data` input), both models run
    once eagerly: this builds a subclassed student, and refuses teachers or students whose
    outputs are probabilities (rows non-negative summing to 1, or a one-logit teacher's
    outputs all in [0, 1]), several outputs, class counts that differ and integer labels
    out of range, each with an error naming the model.

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
        checks.classifier_model("student", student)
        checks.classifier_model("teacher", teacher)
        if not teacher.built:
            raise ValueError(
                "Invalid value for argument `teacher`. Expected a trained, built keras.Model. "
                f"Received: teacher '{teacher.name}', not built (it has no weights yet)"
            )
        if student is teacher:
            raise ValueError(
                "Invalid value for argument `teacher`. Expected a model other than the student "
                f"(the teacher stays frozen while the student trains). Received: teacher="
                f"student='{student.name}'"
            )
        if teacher_preprocessing is None:  # else the teacher may take another input shape
            checks.same_inputs(student, teacher)
        teacher.trainable = False
        self.teacher_dtype = teacher_dtype
        self.student = student
        self.teacher = precision.teacher_in(teacher, teacher_dtype)
        self.augment = augment_lib.get(augment)
        if self.augment is not None and self.augment.num_classes is None:
            self.augment.num_classes = _output_width(student) or _output_width(teacher)
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
        self._checked_a_batch = False
        self._checked_input = _nothing  # weak reference to the last input checked
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
                under a tf.distribute strategy (Keras' multi-step loop fails there): for
                small students the per-step overhead of `fit` otherwise costs as much as the
                arithmetic (benchmarks/train_throughput.py). Batch-level callbacks and the
                progress bar then see every 64th step; epoch logs are unchanged. The compile
                config stores the value given ("auto"), resolved again when reloaded.
            weighted_metrics, run_eagerly, jit_compile, auto_scale_loss: as in
                `keras.Model.compile`.

        Raises:
            ValueError: for an invalid argument, or for `loss=` (use `student_loss_fn`).
        """
        if "loss" in kwargs:
            raise ValueError(
                "Invalid argument `loss`: the Distiller composes its own loss. Expected the "
                "hard-label loss as `student_loss_fn`. Received: "
                f"loss={kwargs['loss']!r}"
            )
        if kwargs:
            received = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
            raise ValueError(
                "Invalid keyword argument for `Distiller.compile`. Expected only its documented "
                f"arguments. Received: {received}"
            )
        self.alpha = _check_alpha(alpha)
        temperature = kd_losses.logits.check_temperature(temperature)
        distributed = compat.distribute_strategy(self) is not None or tf.distribute.has_strategy()
        self._auto_steps_per_execution = steps_per_execution == "auto"
        requested_steps = steps_per_execution  # stored as given: "auto" resolves per compile
        if steps_per_execution == "auto":
            steps_per_execution = 1 if run_eagerly or distributed else AUTO_STEPS_PER_EXECUTION
        elif isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int) or (
            steps_per_execution < 1
        ):
            raise ValueError(
                "Invalid value for argument `steps_per_execution`. Expected 'auto' or a positive "
                f"integer. Received: steps_per_execution={steps_per_execution!r}"
            )
        elif steps_per_execution > 1 and distributed:
            warnings.warn(
                f"steps_per_execution={steps_per_execution} under a tf.distribute strategy: "
                f"Keras {keras.__version__}'s multi-step loop fails under MirroredStrategy "
                "('You must feed a value for placeholder tensor ... while/cond'); use 1.",
                stacklevel=2,
            )
        # None: sparse or categorical cross-entropy, chosen from the labels' shape at trace time
        self.student_loss_fn = checks.loss("student_loss_fn", student_loss_fn, _STUDENT_LOSSES)
        if self.has_terms and distillation_loss_fn is not None:
            raise ValueError(
                "The Distiller has `terms`: pass the logits loss as a term "
                "(`keras_kd.terms.Logits(loss)`), not as `distillation_loss_fn`. Received: "
                f"distillation_loss_fn={distillation_loss_fn!r}"
            )
        distillation_loss_fn = kd_losses.get(distillation_loss_fn)
        ensemble_t = self.teacher.temperature if isinstance(self.teacher, TeacherEnsemble) else None
        if ensemble_t is not None and temperature is not None and ensemble_t != temperature:
            raise ValueError(
                "Invalid value for argument `temperature`: the teacher ensemble has "
                f"temperature={ensemble_t}. Expected the same value or None (set it in one "
                f"place). Received: temperature={temperature}"
            )
        temperature = temperature or ensemble_t
        if isinstance(distillation_loss_fn, kd_losses.TemperatureLoss):
            own = distillation_loss_fn.temperature
            if own is not None and temperature is not None and own != temperature:
                raise ValueError(
                    "Invalid value for argument `temperature`: `distillation_loss_fn` has "
                    f"temperature={own}. Expected the same value or None (set it in one "
                    f"place). Received: temperature={temperature}"
                )
            temperature = temperature or own or DEFAULT_TEMPERATURE
            distillation_loss_fn = distillation_loss_fn.with_temperature(temperature)
        else:
            if temperature is not None:
                warnings.warn(
                    f"temperature={temperature} is not used by distillation_loss_fn="
                    f"{getattr(distillation_loss_fn, 'name', None) or distillation_loss_fn!r}, which "
                    "applies no temperature; it is recorded as temperature=None.",
                    stacklevel=2,
                )
            temperature = None
        self.temperature = temperature
        self.distillation_loss_fn = distillation_loss_fn
        if not self.has_terms:
            self.objective.terms[0].set_loss(distillation_loss_fn)
        self.objective.configure(self.alpha, temperature or DEFAULT_TEMPERATURE)
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

    def fit(self, *args, steps_per_epoch=None, **kwargs):
        """As `keras.Model.fit`. With `steps_per_epoch` and `steps_per_execution="auto"`, the
        steps per execution become the largest divisor of `steps_per_epoch` <= 64: Keras 3.15
        otherwise runs whole executions on repeated datasets (64 steps for
        `steps_per_epoch=3`); see `_steps_per_execution_for`. Terms' warm-ups follow the
        epochs through a callback added here."""
        callbacks = [*(kwargs.pop("callbacks", None) or []), EpochHook(self.objective)]
        if steps_per_epoch and getattr(self, "_auto_steps_per_execution", False):
            wanted = _steps_per_execution_for(steps_per_epoch, self.steps_per_execution)
            if wanted != self.steps_per_execution:
                self.steps_per_execution = wanted
                self.train_function = None  # rebuilt with the new count on the next fit
        return super().fit(*args, steps_per_epoch=steps_per_epoch, callbacks=callbacks, **kwargs)

    def call(self, inputs, training=False):
        inputs, _ = split_cached(inputs)
        return self.student(inputs, training=training)

    @property
    def trained_variables(self):
        """The variables the optimizer trains: the student's and the terms' adapters'."""
        return self.student.trainable_variables + self.objective.trainable_variables

    # ----------------------------------------------------------------- losses
    def _hard_losses(self, y, student_logits):
        loss_fn = self.student_loss_fn
        if student_logits.shape[-1] == 1:  # one-logit binary: 0/1 labels as a (batch, 1) column
            y = ops.reshape(ops.cast(y, "float32"), (-1, 1))
            if loss_fn is None:
                return keras.losses.binary_crossentropy(y, student_logits, from_logits=True)
        if loss_fn is None:
            y_rank, logit_rank = len(y.shape), len(student_logits.shape)
            if y_rank == logit_rank and y.shape[-1] == student_logits.shape[-1]:
                loss_fn = keras.losses.categorical_crossentropy
            elif y_rank == logit_rank and y.shape[-1] not in (1, None):
                checks.label_shape(tuple(y.shape), tuple(student_logits.shape))
            else:
                loss_fn = keras.losses.sparse_categorical_crossentropy
            return loss_fn(y, student_logits, from_logits=True)
        return _unreduced(loss_fn, y, student_logits)

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
        student_logits = student[features.LOGITS]
        self._check_labels_given(y)
        if y is None:  # unlabelled transfer set, alpha = 0: the hard loss is logged as 0
            hard = ops.zeros_like(student_logits[:, 0])
        else:
            hard = reduction.per_example(self._hard_losses(y, student_logits), "student_loss_fn")
        hard_sum = reduction.weighted_sum(hard, sample_weight)
        total_sum, term_sums = self.objective.weighted_sums(
            hard_sum, teacher, student, y, sample_weight)
        local_n = ops.cast(ops.shape(student_logits)[0], "float32")
        regularization = ops.cast(sum(self.student.losses), "float32") if self.student.losses else 0.0
        logs = {
            "loss": ops.divide_no_nan(total_sum, local_n) + regularization,
            "hard_loss": ops.divide_no_nan(hard_sum, local_n),
            **{name: ops.divide_no_nan(value, local_n) for name, value in term_sums.items()},
            "count": local_n,
        }
        return total_sum, regularization, logs

    def teacher_logits(self, x):
        """The teacher's outputs for `x`, in inference mode and without gradient."""
        return self.teacher_outputs(x)[features.LOGITS]

    def teacher_outputs(self, x):
        """`{"logits": ..., layer: ...}` of the teacher (after `teacher_preprocessing`) for
        `x`: inference mode, float32, no gradient. A `TeacherEnsemble` mixes its members'
        distributions at the Distiller's temperature."""
        if self.teacher_preprocessing is not None:
            x = self.teacher_preprocessing(x)
        if isinstance(self._views.teacher, TeacherEnsemble):
            outputs = {features.LOGITS: ops.cast(self._views.teacher(
                x, training=False, temperature=self.temperature), "float32")}
        else:
            outputs = features.outputs_of(self._views.teacher, x, training=False)
        return {k: ops.stop_gradient(v) for k, v in outputs.items()}

    def _cached_outputs(self, cached):
        if self.objective.reads_teacher_layers:
            raise ValueError(
                "Cached teacher logits cannot feed terms that read teacher layers "
                f"({self.objective.names}): train with the live teacher."
            )
        return {features.LOGITS: ops.cast(cached, "float32")}

    # ------------------------------------------------------------------ steps
    def _update_trackers(self, logs):
        compat.loss_tracker(self).update_state(logs["loss"], sample_weight=logs["count"])
        self.hard_loss_tracker.update_state(logs["hard_loss"], sample_weight=logs["count"])
        for tracker in self.term_trackers:
            tracker.update_state(logs[tracker.name], sample_weight=logs["count"])

    def _teacher_outputs_for(self, x, cached):
        """Stored outputs (`keras_kd.teachers.cache_logits`, replayed views) or the live teacher's."""
        return self._cached_outputs(cached) if cached is not None else self.teacher_outputs(x)

    def _inputs_and_teacher_logits(self, x):
        x, cached = split_cached(x)
        return x, self._teacher_outputs_for(x, cached)

    def _augmented(self, x, y):
        """The augmented view of a training batch, its labels and the teacher's outputs."""
        x, cached, view_seed = split_batch(x)
        if self.augment is None:
            if view_seed is not None:
                raise ValueError(
                    "The batches carry augmentation seeds (replayed views) but the Distiller "
                    "has no `augment`: pass the augmentation the views were made with."
                )
        else:
            if cached is not None and view_seed is None:
                raise ValueError(
                    "Cached teacher logits with `augment`: the logits belong to the unaugmented "
                    "inputs, not to the view the student would see. Cache augmented views "
                    "(`keras_kd.views.cache_views`) or drop `augment`."
                )
            seed = view_seed if view_seed is not None else augment_lib.step_seed(
                self.augment_seed, self.optimizer.iterations)
            x, y = self.augment(x, y, seed=seed)
        return x, y, self._teacher_outputs_for(x, cached)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, teacher = self._augmented(x, y)
        with tf.GradientTape() as tape:
            student = features.outputs_of(self._views.student, x, training=True)
            loss, logs = self.compute_distillation_losses(y, teacher, student, sample_weight)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trained_variables  # after the call: it builds a subclassed student
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._update_trackers(logs)
        return self._step_logs(x, y, student[features.LOGITS], sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, teacher = self._inputs_and_teacher_logits(x)
        student = features.outputs_of(self._views.student, x, training=False)
        _, _, logs = self._local_losses(y, teacher, student, sample_weight)
        self._update_trackers(logs)
        return self._step_logs(x, y, student[features.LOGITS], sample_weight)

    def _step_logs(self, x, y, student_logits, sample_weight):
        if y is None:  # no labels: the compiled metrics are not updated (nor logged)
            trackers = (compat.loss_tracker(self), self.hard_loss_tracker, *self.term_trackers)
            logs = {m.name: m.result() for m in trackers}
        else:
            logs = self.compute_metrics(x, y, student_logits, sample_weight=sample_weight)
        return distribute.step_logs(self.distribute_strategy, logs)

    def _check_first_batch(self, batch):
        """Runs both models once, eagerly, on the first batch of `fit`/`evaluate`: see
        `keras_kd.checks.first_batch` (this also builds a subclassed student)."""
        if batch is None:  # an input that cannot be read twice (a Python generator)
            return
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        x, cached = split_cached(x)
        self._check_labels_given(y)
        teacher_x = x if self.teacher_preprocessing is None else self.teacher_preprocessing(x)
        checks.first_batch(self.student, self.teacher, x, y, cached, teacher_x=teacher_x)

    def _check_labels_given(self, y):
        if y is None and self.alpha > 0:
            raise ValueError(
                "Invalid value for argument `alpha`: the data has no labels (y=None), so the "
                "hard-label loss cannot be computed. Expected alpha=0 to distil on the teacher "
                f"alone, or labelled data. Received: alpha={self.alpha}"
            )

    def get_metrics_result(self):
        # With no labels (y=None) the compiled metrics are never built: they have no result.
        compiled = compat.compile_metrics(self)
        unbuilt = compiled is not None and not compiled.built
        results = {}
        for metric in self.metrics:
            if unbuilt and metric is compiled:
                continue
            result = metric.result()
            results.update(result if isinstance(result, dict) else {metric.name: result})
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # fit/evaluate: each new input's first batch (fit's validation data, evaluated every
        # epoch through one cached iterator, once); train_on_batch/test_on_batch: the first
        # call only (an eager pass of both models on every batch would double the cost)
        adapter = getattr(iterator, "data_adapter", None)
        if data_batch is None and (adapter is None or self._checked_input() is not adapter):
            self._check_first_batch(compat.peek_first_batch(iterator))
            self._checked_input = weakref.ref(adapter) if adapter is not None else _nothing
        elif data_batch is not None and not self._checked_a_batch:
            self._check_first_batch(data_batch)
        self._checked_a_batch = True
        # Keras 3 fails here under MultiWorkerMirroredStrategy: see
        # `keras_kd.distribute.symbolic_build_from_one_replica`.
        if compat.distribute_strategy(self) is None or iterator is None or data_batch is not None:
            return compat.maybe_symbolic_build(super(), iterator, data_batch)
        distribute.symbolic_build_from_one_replica(self, iterator)

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
        for key in ("terms", "teacher_preprocessing"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("augment") is not None:
            config["augment"] = keras.saving.deserialize_keras_object(config["augment"])
        return cls(**config)
