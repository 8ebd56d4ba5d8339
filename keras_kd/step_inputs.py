"""What one `Distiller` step reads: the batch, its augmented view and the teacher's outputs.

A batch carries the inputs alone, or (`keras_kd.teachers.cache_logits`,
`keras_kd.views.cache_views`) stored teacher logits and the seed of the augmented view they
were computed on. A training step augments the inputs (`training_batch`) and takes the
teacher's outputs from the batch (`stored_teacher_outputs`) or from the live teacher
(`live_teacher_outputs`); a test step does not augment.

Before the first step of each input, both models run once eagerly on its first batch
(`check_first_batch`, `FirstBatches`), to refuse what would otherwise train silently wrong.
"""

import weakref

import keras
from keras import ops

from keras_kd import augment as augment_lib
from keras_kd import checks
from keras_kd import compat
from keras_kd import features
from keras_kd.teachers import TeacherEnsemble
from keras_kd.teachers import split_batch
from keras_kd.teachers import split_cached


def training_batch(x, y, augment, augment_seed, step):
    """`(inputs, labels, stored teacher logits or None)` of a training batch, augmented.

    The view of batch `step` is seeded with `(augment_seed, step)`, or with the seed the
    batch carries (replayed views); with MixUp/CutMix the labels are mixed too.

    Raises:
        ValueError: for replayed views without `augment`, or stored logits of unaugmented
            inputs with `augment` (they belong to another view than the student's).
    """
    x, cached, view_seed = split_batch(x)
    if augment is None:
        if view_seed is not None:
            raise ValueError(
                "The batches carry augmentation seeds (replayed views) but the Distiller "
                "has no `augment`: pass the augmentation the views were made with."
            )
        return x, y, cached
    if cached is not None and view_seed is None:
        raise ValueError(
            "Cached teacher logits with `augment`: the logits belong to the unaugmented "
            "inputs, not to the view the student would see. Cache augmented views "
            "(`keras_kd.views.cache_views`) or drop `augment`."
        )
    seed = view_seed if view_seed is not None else augment_lib.step_seed(augment_seed, step)
    x, y = augment(x, y, seed=seed)
    return x, y, cached


def live_teacher_outputs(teacher, x, preprocessing=None, temperature=None):
    """`{"logits": ..., layer: ...}` of `teacher` (a feature view, `keras_kd.features.view`)
    for `x` after `preprocessing`: inference mode, float32, no gradient. A `TeacherEnsemble`
    mixes its members' distributions at `temperature`."""
    if preprocessing is not None:
        x = preprocessing(x)
    if isinstance(teacher, TeacherEnsemble):
        outputs = {features.LOGITS: ops.cast(teacher(
            x, training=False, temperature=temperature), "float32")}
    else:
        outputs = features.outputs_of(teacher, x, training=False)
    return {k: ops.stop_gradient(v) for k, v in outputs.items()}


def stored_teacher_outputs(logits, objective):
    """`{"logits": ...}` of stored teacher logits, in float32.

    Raises:
        ValueError: if a term of `objective` reads teacher layers (not stored).
    """
    if objective.reads_teacher_layers:
        raise ValueError(
            "Cached teacher logits cannot feed terms that read teacher layers "
            f"({objective.names}): train with the live teacher."
        )
    return {features.LOGITS: ops.cast(logits, "float32")}


def check_first_batch(batch, student, teacher, teacher_preprocessing, alpha):
    """Runs both models once, eagerly, on `batch`: see `keras_kd.checks.first_batch` (this
    also builds a subclassed student). Refuses unlabelled data when `alpha > 0`. `None` (an
    input that cannot be read twice, such as a Python generator) is not checked."""
    if batch is None:
        return
    x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
    x, cached = split_cached(x)
    checks.labels_given(y, alpha)
    teacher_x = x if teacher_preprocessing is None else teacher_preprocessing(x)
    checks.first_batch(student, teacher, x, y, cached, teacher_x=teacher_x)


def _nothing():
    return None


class FirstBatches:
    """Which first batches a model has checked, so that each input is checked once.

    `fit`/`evaluate` check each new input's first batch (fit's validation data, evaluated
    every epoch through one cached iterator, once); `train_on_batch`/`test_on_batch` check
    the first call only (an eager pass of both models on every batch would double the cost).
    A check that raises is not recorded: the same input is checked again next time.
    """

    def __init__(self):
        self._checked_a_batch = False
        self._checked_input = _nothing  # weak reference to the data adapter last checked

    def check(self, check, iterator=None, data_batch=None):
        """Calls `check(batch)` if the batch of `iterator` (Keras' epoch iterator) or
        `data_batch` (`*_on_batch`) is one to check."""
        adapter = getattr(iterator, "data_adapter", None)
        if data_batch is None and (adapter is None or self._checked_input() is not adapter):
            check(compat.peek_first_batch(iterator))
            self._checked_input = weakref.ref(adapter) if adapter is not None else _nothing
        elif data_batch is not None and not self._checked_a_batch:
            check(data_batch)
        self._checked_a_batch = True
