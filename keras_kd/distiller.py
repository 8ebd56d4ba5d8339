"""`Distiller`: a `keras.Model` that trains a student to match a frozen teacher."""

import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd import augment as augment_lib
from keras_kd import checks
from keras_kd import distribute
from keras_kd import losses as kd_losses
from keras_kd import precision
from keras_kd import reduction
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
}


def _check_logits_model(model, argument):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a keras.Model. "
            f"Received: {argument}={model!r}"
        )
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax":
        raise ValueError(
            f"Invalid value for argument `{argument}`: the Distiller expects logits, but the "
            f"last layer of {argument} '{model.name}' ('{last.name}') applies a softmax. "
            "Give the last layer no activation (e.g. `keras.layers.Dense(num_classes)`, or "
            "`classifier_activation=None` for keras.applications models)."
        )


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

    where `hard = student_loss_fn(y, student_logits)` and by default
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

    Args:
        student: the `keras.Model` to train; it must output logits (no softmax).
        teacher: a trained, built `keras.Model` outputting logits, or a list of them (an
            equal-weight `TeacherEnsemble` of their logits).
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

    def __init__(self, student, teacher, augment=None, augment_seed=None, teacher_dtype=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(teacher, (list, tuple)):
            teacher = TeacherEnsemble(teacher)
        _check_logits_model(student, "student")
        _check_logits_model(teacher, "teacher")
        if not teacher.built:
            raise ValueError(
                "Invalid value for argument `teacher`: the teacher must be a trained model, "
                f"but '{teacher.name}' is not built (it has no weights yet)."
            )
        if student is teacher:
            raise ValueError("Arguments `student` and `teacher` must be different models.")
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
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.alpha = DEFAULT_ALPHA
        self.temperature = DEFAULT_TEMPERATURE
        self.student_loss_fn = None
        self.distillation_loss_fn = kd_losses.KLDivergence(temperature=self.temperature)
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
                `"categorical_crossentropy"` (both taken `from_logits=True`). `None` picks
                sparse or categorical cross-entropy on logits from the labels' shape.
            distillation_loss_fn: a `keras_kd.losses` loss (or name: `"kl_divergence"`,
                `"soft_target_crossentropy"`, `"logits_mse"`), or any
                `(teacher_logits, student_logits) -> per-example loss`. Default:
                `keras_kd.losses.KLDivergence()` (times `T**2`).
            alpha: weight in [0, 1] of the hard-label loss; `1 - alpha` weighs the
                distillation loss. Default 0.1.
            temperature: softening temperature `T > 0` for temperature losses. `None` keeps
                the loss's own temperature, or 4.0 if it has none.
            steps_per_execution: training steps per call into TensorFlow. `"auto"` (default)
                runs `AUTO_STEPS_PER_EXECUTION` (64) steps per call, 1 when `run_eagerly` or
                under a tf.distribute strategy (Keras' multi-step loop fails there): for
                small students the per-step overhead of `fit` otherwise costs as much as the
                arithmetic (benchmarks/train_throughput.py). Batch-level callbacks and the
                progress bar then see every 64th step; epoch logs are unchanged.
            weighted_metrics, run_eagerly, jit_compile, auto_scale_loss: as in
                `keras.Model.compile`.

        Raises:
            ValueError: for an invalid argument, or for `loss=` (use `student_loss_fn`).
        """
        if "loss" in kwargs:
            raise ValueError(
                "The Distiller takes no `loss` argument: pass the hard-label loss as "
                f"`student_loss_fn`. Received: loss={kwargs['loss']!r}"
            )
        if kwargs:
            raise ValueError(f"Unrecognized arguments for `Distiller.compile`: {sorted(kwargs)}")
        self.alpha = _check_alpha(alpha)
        temperature = kd_losses.logits.check_temperature(temperature)
        distributed = self._distribute_strategy is not None or tf.distribute.has_strategy()
        self._auto_steps_per_execution = steps_per_execution == "auto"
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
        distillation_loss_fn = kd_losses.get(distillation_loss_fn)
        if isinstance(distillation_loss_fn, kd_losses.TemperatureLoss):
            own = distillation_loss_fn.temperature
            if own is not None and temperature is not None and own != temperature:
                raise ValueError(
                    "Conflicting temperatures: `distillation_loss_fn` has temperature="
                    f"{own} but `compile` received temperature={temperature}. Set it in one place."
                )
            temperature = temperature or own or DEFAULT_TEMPERATURE
            distillation_loss_fn = distillation_loss_fn.with_temperature(temperature)
        self.temperature = temperature
        self.distillation_loss_fn = distillation_loss_fn
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
            distillation_loss_fn=distillation_loss_fn,
            alpha=self.alpha,
            temperature=temperature,
            weighted_metrics=weighted_metrics,
            run_eagerly=run_eagerly,
            steps_per_execution=steps_per_execution,
            jit_compile=self.jit_compile,
        )

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {k: keras.saving.serialize_keras_object(v) for k, v in self._kd_compile_args.items()}

    def compile_from_config(self, config):
        self.compile(**{k: keras.saving.deserialize_keras_object(v) for k, v in config.items()})
        if self.built:
            self.optimizer.build(self.student.trainable_variables)

    def fit(self, *args, steps_per_epoch=None, **kwargs):
        """As `keras.Model.fit`. With `steps_per_epoch` and `steps_per_execution="auto"`, the
        steps per execution become the largest divisor of `steps_per_epoch` <= 64: Keras 3.15
        otherwise runs whole executions on repeated datasets (64 steps for
        `steps_per_epoch=3`); see `_steps_per_execution_for`."""
        if steps_per_epoch and getattr(self, "_auto_steps_per_execution", False):
            wanted = _steps_per_execution_for(steps_per_epoch, self.steps_per_execution)
            if wanted != self.steps_per_execution:
                self.steps_per_execution = wanted
                self.train_function = None  # rebuilt with the new count on the next fit
        return super().fit(*args, steps_per_epoch=steps_per_epoch, **kwargs)

    def call(self, inputs, training=False):
        inputs, _ = split_cached(inputs)
        return self.student(inputs, training=training)

    # ----------------------------------------------------------------- losses
    def _hard_losses(self, y, student_logits):
        loss_fn = self.student_loss_fn
        if loss_fn is None:
            y_rank, logit_rank = len(y.shape), len(student_logits.shape)
            if y_rank == logit_rank and y.shape[-1] == student_logits.shape[-1]:
                loss_fn = keras.losses.categorical_crossentropy
            elif y_rank == logit_rank and y.shape[-1] not in (1, None):
                raise ValueError(
                    f"Labels of shape {tuple(y.shape)} match neither sparse labels (batch,) "
                    f"nor one-hot labels like the student's outputs {tuple(student_logits.shape)}."
                )
            else:
                loss_fn = keras.losses.sparse_categorical_crossentropy
            return loss_fn(y, student_logits, from_logits=True)
        return _unreduced(loss_fn, y, student_logits)

    def compute_distillation_losses(self, y, teacher_logits, student_logits, sample_weight=None):
        """Returns `(loss_for_gradient, logs)` for one (per-replica) batch.

        `logs` holds the local means of `loss`, `hard_loss` and `distillation_loss` and the
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
        student_logits = ops.cast(student_logits, "float32")  # losses in float32 under mixed precision
        hard = reduction.per_example(self._hard_losses(y, student_logits), "student_loss_fn")
        soft = reduction.per_example(
            _unreduced(self.distillation_loss_fn, teacher_logits, student_logits),
            "distillation_loss_fn",
        )
        hard_sum = reduction.weighted_sum(hard, sample_weight)
        soft_sum = reduction.weighted_sum(soft, sample_weight)
        total_sum = self.alpha * hard_sum + (1.0 - self.alpha) * soft_sum
        local_n = ops.cast(ops.shape(student_logits)[0], "float32")
        regularization = ops.cast(sum(self.student.losses), "float32") if self.student.losses else 0.0
        logs = {
            "loss": ops.divide_no_nan(total_sum, local_n) + regularization,
            "hard_loss": ops.divide_no_nan(hard_sum, local_n),
            "distillation_loss": ops.divide_no_nan(soft_sum, local_n),
            "count": local_n,
        }
        return total_sum, regularization, logs

    def teacher_logits(self, x):
        """The teacher's outputs for `x`, in inference mode and without gradient."""
        return ops.stop_gradient(ops.cast(self.teacher(x, training=False), "float32"))

    # ------------------------------------------------------------------ steps
    def _update_trackers(self, logs):
        self._loss_tracker.update_state(logs["loss"], sample_weight=logs["count"])
        self.hard_loss_tracker.update_state(logs["hard_loss"], sample_weight=logs["count"])
        self.distillation_loss_tracker.update_state(
            logs["distillation_loss"], sample_weight=logs["count"]
        )

    def _inputs_and_teacher_logits(self, x):
        x, cached = split_cached(x)  # batches from `keras_kd.teachers.cache_logits`
        if cached is not None:
            return x, ops.cast(cached, "float32")
        return x, self.teacher_logits(x)

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
                    "(`keras_kd.teachers.cache_views`) or drop `augment`."
                )
            seed = view_seed if view_seed is not None else augment_lib.step_seed(
                self.augment_seed, self.optimizer.iterations)
            x, y = self.augment(x, y, seed=ops.reshape(seed, (-1,))[:2])
        teacher_logits = (ops.cast(cached, "float32") if cached is not None
                          else self.teacher_logits(x))
        return x, y, teacher_logits

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, teacher_logits = self._augmented(x, y)
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            loss, logs = self.compute_distillation_losses(
                y, teacher_logits, student_logits, sample_weight
            )
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._update_trackers(logs)
        return self._step_logs(x, y, student_logits, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, teacher_logits = self._inputs_and_teacher_logits(x)
        student_logits = self.student(x, training=False)
        _, _, logs = self._local_losses(y, teacher_logits, student_logits, sample_weight)
        self._update_trackers(logs)
        return self._step_logs(x, y, student_logits, sample_weight)

    def _step_logs(self, x, y, student_logits, sample_weight):
        logs = self.compute_metrics(x, y, student_logits, sample_weight=sample_weight)
        return distribute.step_logs(self.distribute_strategy, logs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 fails here under MultiWorkerMirroredStrategy: see
        # `keras_kd.distribute.symbolic_build_from_one_replica`.
        if self._distribute_strategy is None or iterator is None or data_batch is not None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        distribute.symbolic_build_from_one_replica(self, iterator)

    # ------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            student=keras.saving.serialize_keras_object(self.student),
            teacher=keras.saving.serialize_keras_object(self.teacher),
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
        if config.get("augment") is not None:
            config["augment"] = keras.saving.deserialize_keras_object(config["augment"])
        return cls(**config)
