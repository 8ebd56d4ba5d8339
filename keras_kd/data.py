"""Datasets for distillation: TFDS names, `.npz` files, scikit-learn's digits, numpy arrays.

Everything ends as `DataSplits`: batched, prefetched `tf.data` train and test pipelines of
float32 images scaled to [0, 1] with integer labels, plus what export needs to know
(input shape, number of classes, class names, the normalisation applied).

Sources, in the order `load` tries them:
- a tuple `((x_train, y_train), (x_test, y_test))` of numpy arrays;
- a folder of images: either `train/` and `test/` folders of class folders (the layout of
  `../shared/data/cifar10`), or one folder of class folders (the test split is then carved
  from it too); see `from_directory`. Its images stay raw pixels in [0, 255]: the image
  models of `keras_kd.models` normalise inside the model;
- a path to an `.npz` in the `keras.datasets` layout (`x_train`, `y_train`, `x_test`, `y_test`);
- `"digits"`: scikit-learn's bundled 8x8 digits (no download; needs scikit-learn);
- any other string: a TFDS name such as `"mnist"` or `"cifar10"` (downloads on first use).
"""

import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf

from keras_kd import checks
from keras_kd import compat

AUTOTUNE = tf.data.AUTOTUNE
DATA_SHARDING = tf.data.experimental.AutoShardPolicy.DATA


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be read locally or downloaded."""


@dataclasses.dataclass
class DataSplits:
    """Train and test pipelines with the facts export and reports need.

    Attributes:
        train: batched, shuffled, prefetched `tf.data.Dataset` of `(x, y)`.
        test: batched, prefetched `tf.data.Dataset` of `(x, y)`.
        num_classes: number of classes.
        input_shape: shape of one example, without the batch dimension.
        class_names: one name per class.
        scale: inputs are `raw * scale` (e.g. 1/255 for uint8 images).
        name: where the data came from.
        validation: batched `tf.data.Dataset` carved from the training data (seeded,
            disjoint from `train`), or None when the source has none.
        validation_size: its number of examples (0 without a validation split).
        train_examples: the training examples unbatched, unshuffled, in a fixed order, as
            stored (raw uint8 pixels for image folders): the input of
            `keras_kd.views.cache_views`. None when the source does not provide it.
        train_size: number of training examples (None when the source does not say).
        test_size: number of test examples (None when the source does not say).
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    class_names: list
    scale: float
    name: str
    train_size: int | None
    test_size: int | None
    validation: tf.data.Dataset | None = None
    validation_size: int = 0
    train_examples: tf.data.Dataset | None = None

    def test_arrays(self, limit=None):
        """The test split as numpy `(x, y)` arrays (at most `limit` examples)."""
        return _to_arrays(self.test, limit)

    def train_arrays(self, limit=None):
        """The training split as numpy `(x, y)` arrays (at most `limit` examples)."""
        return _to_arrays(self.train, limit)


def numpy_batches(data, limit=None):
    """Yields float32 `(x, y_or_None)` numpy batches from a tf.data dataset, `(x, y)` or `x`."""
    if isinstance(data, tf.data.Dataset):
        iterable = data.as_numpy_iterator()
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        iterable = [(np.asarray(data[0]), np.asarray(data[1]))]
    else:
        iterable = [(np.asarray(data), None)]
    seen = 0
    for item in iterable:
        x, y = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        x = np.asarray(x, dtype=np.float32)
        if limit is not None:
            x = x[: limit - seen]
            y = None if y is None else np.asarray(y)[: len(x)]
        seen += len(x)
        yield x, y
        if limit is not None and seen >= limit:
            return


def class_indices(y):
    """Integer class labels `(N,)` from labels `(N,)`, `(N, 1)` (keras.datasets' CIFAR
    layout) or one-hot / soft `(N, C)` rows (their argmax)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(-1)
    return y.reshape(-1).astype("int64")


def predicted_classes(logits):
    """Top-1 classes `(N,)` of logits `(N, C)`; a one-logit binary model predicts `logit > 0`."""
    logits = np.asarray(logits)
    if logits.shape[-1] == 1:
        return (logits[:, 0] > 0).astype("int64")
    return logits.argmax(-1)


def _to_arrays(dataset, limit):
    x, y = zip(*numpy_batches(dataset, limit))
    return np.concatenate(x), np.concatenate(y)


def _scale_for(dtype):
    return 1.0 / 255.0 if np.dtype(dtype) == np.uint8 else 1.0


def _with_channels(x):
    """Grayscale images (N, H, W) become (N, H, W, 1), as TFDS and CNNs have them."""
    return x[..., None] if x.ndim == 3 else x


def _images(x, scale):
    """Model-ready float32 images with a channel axis."""
    return (_with_channels(x) * scale).astype("float32")


def load_npz(path):
    """Reads an `.npz` in the `keras.datasets` layout; returns `((x_train, y_train), (x_test, y_test))`."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Invalid value for argument `source`: no file at {path!r}. Expected an .npz with "
            "keys x_train, y_train, x_test, y_test (the keras.datasets layout)."
        )
    with np.load(path) as data:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
        if missing:
            raise ValueError(
                f"Invalid .npz file {path!r}: missing keys {sorted(missing)}. Expected "
                f"x_train, y_train, x_test, y_test. Found: {sorted(data.files)}"
            )
        return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])


def load_npz_arrays(path):
    """`load_npz` ready for a model: float32 `(N, H, W, C)` images and int64 labels.

    Images are divided by 255 when stored as uint8 (the keras.datasets layout), as `load` does.
    """
    (x_train, y_train), (x_test, y_test) = load_npz(path)
    scale = _scale_for(x_train.dtype)
    return ((_images(x_train, scale), y_train.astype("int64")),
            (_images(x_test, scale), y_test.astype("int64")))


def load_digits(test_fraction=0.25, seed=0):
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0-16), split reproducibly."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError(
            "The 'digits' dataset needs scikit-learn: pip install 'keras-kd[demo]'"
        ) from e
    digits = sk_load_digits()
    x = digits.images.astype("uint8")  # raw values 0..16; `load` scales them by 1/16
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def prefetched(ds):
    """`ds.prefetch(AUTOTUNE)` with tf.data's autotuning thread turned off, for `fit`.

    With autotuning on, destroying an iterator can block until the autotuner's next
    wake-up, whose period doubles from 10 ms: the wait ends 2.56, 5.12, 10.24, 20.48 ... s
    after the iterator was made. Keras makes a new iterator each epoch and drops the old one
    early in the next epoch, so a multi-epoch `fit` paid seconds in some epochs
    (benchmarks/epoch_boundary.py, docs/guide.md "Performance"). Without the autotuner the
    input still overlaps the step (prefetch), and parallel maps run min(16, cores) calls at
    a time, the autotuner's starting value. Every pipeline keras_kd builds ends here.
    """
    if not isinstance(ds, tf.data.Dataset):
        raise TypeError(
            f"Invalid value for argument `ds`. Expected a tf.data.Dataset. Received: "
            f"ds={type(ds).__name__}"
        )
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(AUTOTUNE).with_options(options)


def _checked_shuffle(shuffle):
    if shuffle not in (True, False):
        raise ValueError(
            "Invalid value for argument `shuffle`. Expected True or False (Keras' "
            f"shuffle='batch' is for `fit` itself). Received: shuffle={shuffle!r}"
        )
    return shuffle


def epoch_seeds():
    """A dataset of one int64 seed, redrawn each iteration (each epoch), from the global seed
    when one is set: the seeds of `row_batches`' shuffles."""
    return tf.data.Dataset.random(rerandomize_each_iteration=True).take(1)


def row_batches(num_samples, batch_size, shuffle, seeds=None):
    """The row indices `array_batches` reads, `batch_size` at a time (the last batch may be
    smaller), as int64 vectors: `0 .. num_samples - 1` in order, or with `shuffle=True` a new
    permutation each iteration (each epoch), seeded by the global seed when one is set, like
    Keras' own shuffles (the same orders for the same seed). A batch of `k * batch_size`
    rows holds the rows of `k` batches in a row.

    The permutation is one `stateless_shuffle` per iteration, its seed drawn by
    `Dataset.random`, sliced into batches: a pass over 60,000 rows in batches of 4,096 took
    7 ms so, 56 ms as `Dataset.range(n).shuffle(n).batch(4096)`, which moves every row
    through the pipeline on its own (session 17).

    `seeds`: the `epoch_seeds()` to draw from (default: new ones). Batchings of the same rows
    by different sizes given the same `seeds` take the same orders: a new `epoch_seeds()`
    draws other seeds under the global seed."""
    if not _checked_shuffle(shuffle):
        return tf.data.Dataset.range(num_samples).batch(batch_size)
    full, batches = num_samples // batch_size, -(-num_samples // batch_size)

    def sliced(seed):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_samples, dtype=tf.int64), tf.stack([seed, tf.constant(0, tf.int64)]))
        rows = tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[:full * batch_size], [full, batch_size]))
        if full < batches:  # the partial last batch
            rows = rows.concatenate(tf.data.Dataset.from_tensors(order[full * batch_size:]))
        return rows

    seeds = epoch_seeds() if seeds is None else seeds
    return seeds.flat_map(sliced).apply(tf.data.experimental.assert_cardinality(batches))


def array_batches(x, y=None, sample_weight=None, *, batch_size=None, shuffle=True,
                  class_weight=None, steps=None):
    """The batches Keras' `fit(x, y, batch_size=..., shuffle=...)` trains on when given
    arrays (numpy arrays or dense tensors, nested as Keras allows), as a `tf.data` pipeline
    that `Distiller.fit` reads them through and any `keras.Model.fit` can take.

    Keras' own adapter prepares the arrays (`keras_kd.compat.keras_array_inputs`): the same
    checks and errors, `class_weight` as sample weights, floats cast to floatx, default batch
    size 32 (or `ceil(n / steps)` with `steps`). Each batch gathers its rows from the whole
    arrays, as Keras does; with `shuffle=False` the batches are Keras' own, in its order.
    Two things differ from Keras 3.15, both measured (docs/guide.md, "Data"):
    - `shuffle=True` draws a new order every epoch, also under `keras.utils.set_random_seed`
      (Keras' adapter then repeats one order in every epoch), the same orders for the same
      seed;
    - tf.data's autotuner is off (`prefetched`): dropping an epoch's iterator never waits.

    Returns a `tf.data.Dataset` of `(x,)`, `(x, y)` or `(x, y, sample_weight)` batches.
    """
    shuffle = _checked_shuffle(shuffle)
    inputs, num_samples, batch_size = compat.keras_array_inputs(
        x, y, sample_weight, batch_size, steps, class_weight)
    with tf.device("CPU:0"):  # held on the host, as Keras' adapter holds them
        arrays = tf.nest.map_structure(tf.convert_to_tensor, inputs)
    # every batching of these rows shares one draw of seeds (`fit` may batch them by execution)
    rows = functools.partial(row_batches, num_samples, shuffle=shuffle,
                             seeds=epoch_seeds() if shuffle else None)
    return held_batches(arrays, rows, steps=-(-num_samples // batch_size), batch_size=batch_size)


HELD_ATTRIBUTE = "_keras_kd_held"  # what `held_batches` marks its datasets with


def held_batches(arrays, rows, *, steps, batch_size, pack=None):
    """Batches gathered by row index from data held in memory, one `tf.data` element per
    step (tf.data's autotuner off, `prefetched`). `Distiller.fit` reads such a dataset one
    execution at a time instead (`keras_kd.fit_arrays.ExecutionBlocks`: the same rows in the
    same order); a dataset derived from it (`take`, `map`, ...) is a new object, read step
    by step.

    Args:
        arrays: a nested structure of host tensors or variables, examples along axis 0.
        rows: a function `rows(n)` giving a dataset of int64 row-index vectors of `n` rows
            each (the last may have fewer), in the same order for every `n`.
        steps: batches per epoch.
        batch_size: rows per batch.
        pack: a function from the rows gathered from `arrays` to the batch; None: as
            gathered.
    """
    batches = prefetched(rows(batch_size).map(lambda these: gathered(arrays, these, pack),
                                              num_parallel_calls=AUTOTUNE))
    setattr(batches, HELD_ATTRIBUTE, dict(arrays=arrays, rows=rows, steps=steps,
                                          batch_size=batch_size, pack=pack))
    return batches


def gathered(arrays, rows, pack=None):
    """The batch of `rows` gathered on the host from `arrays` (a nested structure), as
    `pack` makes it (None: as gathered)."""
    with tf.device("CPU:0"):
        batch = tf.nest.map_structure(lambda a: tf.gather(a, rows), arrays)
    return batch if pack is None else pack(batch)


def pipeline(ds, batch_size, *, training, seed=0, size=None, cache=True, cast=None,
             shard_policy=None):
    """An unbatched `(x, y)` dataset made ready for `fit`: cached, shuffled (when
    `training`, reshuffled each epoch from `seed`, buffer `min(size, 60000)`), batched, `x`
    cast to `cast` per batch (e.g. `tf.float32` for images stored as uint8), prefetched
    without tf.data's autotuning thread (`prefetched`).

    Under multi-worker training `fit` shards the result across workers: `shard_policy` sets
    it (in-memory sources shard by example, `DATA`; TFDS sources keep `AUTO`: by file when
    there are enough files, else by example). The loaders build their splits with it; it is
    public for a subset of a split (`fixed_sample`) fed the same way.
    """
    if shard_policy is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard_policy
        ds = ds.with_options(options)
    if cache:
        ds = ds.cache()
    if training:
        if size is None:
            size = int(ds.cardinality())
            if size < 0:
                raise ValueError(
                    "Invalid value for argument `size`: None, and the dataset's length is "
                    "unknown. Expected the number of examples (it sets the shuffle buffer)."
                )
        ds = ds.shuffle(min(size, 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if cast is not None:
        ds = ds.map(lambda x, y: (tf.cast(x, cast), y), num_parallel_calls=AUTOTUNE)
    return prefetched(ds)


def _labels(y_train, y_test):
    """`(y_train, y_test, num_classes)`: int64 class indices, or float32 one-hot/soft rows."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if y_train.ndim == 2 and y_train.shape[1] > 1:  # one-hot or soft labels
        for name, y in (("y_train", y_train), ("y_test", y_test)):
            if y.ndim != 2 or y.shape[1] != y_train.shape[1] or y.min() < 0 or not np.allclose(
                y.sum(-1), 1.0, atol=1e-3
            ):
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected one-hot or soft labels of "
                    f"shape (N, {y_train.shape[1]}) with non-negative rows summing to 1, like "
                    f"y_train. Received: {name} of shape {y.shape}, min {y.min():g}, row sums "
                    f"from {y.sum(-1).min():g} to {y.sum(-1).max():g}"
                )
        return y_train.astype("float32"), y_test.astype("float32"), int(y_train.shape[1])
    labels = []
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1 or (y.size and (y.min() < 0 or not np.all(np.mod(y, 1) == 0))):
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected integer class labels >= 0 of "
                "shape (N,) or (N, 1), or one-hot rows (N, C). Received: "
                f"{name} of shape {y.shape} and dtype {y.dtype}"
            )
        labels.append(y.astype("int64"))
    num_classes = int(max(labels[0].max(initial=0), labels[1].max(initial=0))) + 1
    return labels[0], labels[1], num_classes


def _hold_out(x, y, validation_split, seed):
    """`(x_train, y_train), (x_val, y_val)`: a seeded random `validation_split` of the examples."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(
            "Invalid value for argument `validation_split`. Expected a fraction in [0, 1). "
            f"Received: validation_split={validation_split!r}"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * validation_split))
    return (x[order[n_val:]], y[order[n_val:]]), (x[order[:n_val]], y[order[:n_val]])


def from_arrays(train, test, *, batch_size=128, seed=0, name="arrays", class_names=None, scale=None,
                validation_split=0.0):
    """Builds `DataSplits` from `((x_train, y_train), (x_test, y_test))` numpy arrays.

    Inputs are multiplied by `scale` (default: 1/255 for uint8, 1 otherwise); grayscale
    (N, H, W) images get a channel axis. Labels are integer classes `(N,)` or `(N, 1)`
    (flattened to int64; `num_classes = max + 1`), or one-hot / soft labels `(N, C)` whose
    rows are non-negative and sum to 1 (kept as float32; `num_classes = C`).
    `validation_split` holds out that fraction of the training examples (chosen with `seed`)
    as `DataSplits.validation`.
    """
    batch_size = checks.positive_int("batch_size", batch_size)
    (x_train, y_train), (x_test, y_test) = train, test
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train, y_test, num_classes = _labels(y_train, y_test)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        name = "y_train" if len(x_train) != len(y_train) else "y_test"
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected one label per example: x and y "
            f"differ in length. Received: x_train={len(x_train)}, y_train={len(y_train)}, "
            f"x_test={len(x_test)}, y_test={len(y_test)} examples"
        )
    scale = _scale_for(x_train.dtype) if scale is None else float(scale)
    x_train, x_test = _images(x_train, scale), _images(x_test, scale)
    (x_train, y_train), (x_val, y_val) = _hold_out(x_train, y_train, validation_split, seed)
    return DataSplits(
        train=pipeline(
            tf.data.Dataset.from_tensor_slices((x_train, y_train)), batch_size,
            training=True, seed=seed, size=len(x_train), cache=False, shard_policy=DATA_SHARDING,
        ),
        test=pipeline(
            tf.data.Dataset.from_tensor_slices((x_test, y_test)), batch_size,
            training=False, cache=False, shard_policy=DATA_SHARDING,
        ),
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[1:]),
        class_names=list(class_names) if class_names else [str(i) for i in range(num_classes)],
        scale=scale,
        name=name,
        train_size=len(x_train),
        test_size=len(x_test),
        validation=pipeline(
            tf.data.Dataset.from_tensor_slices((x_val, y_val)), batch_size,
            training=False, cache=False, shard_policy=DATA_SHARDING,
        ) if len(x_val) else None,
        validation_size=len(x_val),
    )


def _supervised_keys(name, info):
    """`(image_key, label_key)` of a TFDS dataset: the builder's own `supervised_keys`
    (what `as_supervised=True` returns), e.g. `("image", "label")` for cifar10, whose first
    feature is `"id"`."""
    keys = info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
        raise ValueError(
            f"Invalid value for argument `source`. Expected a TFDS dataset with supervised keys "
            f"(input, label), as image-classification datasets have. Received: source={name!r} "
            f"with supervised_keys={keys!r}"
        )
    return keys


def load_tfds(name, *, batch_size=128, seed=0, data_dir=None, download=True, cache=True,
              validation_split=0.0):
    """Loads a TFDS image-classification dataset as `DataSplits` (downloads when allowed).

    Raises:
        DatasetUnavailableError: if the data is neither on disk nor downloadable; the message
            names the local `.npz` alternative.
    """
    try:
        import tensorflow_datasets as tfds  # heavy: imported only when a TFDS name is used
    except ImportError as e:
        raise ImportError(
            f"Loading the TFDS dataset {name!r} needs tensorflow-datasets: "
            "pip install 'keras-kd[tfds]'. Without it, pass an .npz in the keras.datasets layout "
            "or 'digits'."
        ) from e

    held_out = round(100 * validation_split)  # TFDS slices whole percents: the last N % of train
    splits = [f"train[:{100 - held_out}%]", "test", f"train[{100 - held_out}%:]"] if held_out else [
        "train", "test"]
    try:
        (train, test, *validation), info = tfds.load(
            name,
            split=splits,
            as_supervised=True,
            with_info=True,
            data_dir=data_dir,
            download=download,
        )
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"Invalid value for argument `source`: {name!r} is neither a file nor a TFDS "
            f"dataset name. {e}"
        ) from None
    except (OSError, AssertionError, ImportError) as e:
        raise DatasetUnavailableError(
            f"Could not load the TFDS dataset {name!r} "
            f"({'download failed' if download else 'not on disk and download=False'}: "
            f"{type(e).__name__}: {str(e)[:200]}). Without internet, pass a local .npz in the "
            "keras.datasets layout instead, e.g. keras_kd.data.load('path/to/mnist.npz') or "
            "`keras-kd ... --data path/to/mnist.npz`, or 'digits' (bundled with scikit-learn)."
        ) from e
    image_key, label_key = _supervised_keys(name, info)
    dtype = info.features[image_key].dtype
    scale = _scale_for(dtype.as_numpy_dtype if hasattr(dtype, "as_numpy_dtype") else dtype)

    def normalize(x, y):
        return tf.cast(x, tf.float32) * scale, tf.cast(y, tf.int64)

    label = info.features[label_key]
    sizes = {}
    for split in ("train", "test"):
        try:
            sizes[split] = info.splits[split].num_examples
        except KeyError:  # split sizes not recorded (e.g. under tfds.testing.mock_data)
            sizes[split] = None
    return DataSplits(
        train=pipeline(train.map(normalize, num_parallel_calls=AUTOTUNE), batch_size,
                       training=True, seed=seed, size=sizes["train"] or 60000, cache=cache),
        test=pipeline(test.map(normalize, num_parallel_calls=AUTOTUNE), batch_size,
                      training=False, cache=cache),
        num_classes=label.num_classes,
        input_shape=tuple(info.features[image_key].shape),
        class_names=list(label.names),
        scale=scale,
        name=f"tfds:{name}",
        train_size=sizes["train"],
        test_size=sizes["test"],
        validation=pipeline(validation[0].map(normalize, num_parallel_calls=AUTOTUNE),
                            batch_size, training=False, cache=cache) if validation else None,
    )


IMAGE_FORMATS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _first_image(folder):
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            if f.lower().endswith(IMAGE_FORMATS):
                return os.path.join(root, f)
    raise ValueError(
        f"Invalid value for argument `source`: no image files ({', '.join(IMAGE_FORMATS)}) "
        f"under {folder!r}. Expected a folder of class folders of images."
    )


def _has_class_folders(folder):
    return os.path.isdir(folder) and any(
        os.path.isdir(os.path.join(folder, d)) for d in os.listdir(folder)
    )


def decode_image(contents, channels):
    """Image file bytes to uint8 `(H, W, channels)`, decoded as Pillow (the edge runner) does.

    JPEG files go through libjpeg's accurate integer DCT with fancy upsampling
    (`dct_method="INTEGER_ACCURATE"`), the default of Pillow and of libjpeg itself; other
    formats through `tf.io.decode_image`. TensorFlow's own default for JPEG (hence
    `keras.utils.image_dataset_from_directory`'s) is the *fast* integer DCT: on the 10,000
    CIFAR-10 test JPEG files it differs from Pillow in 65 % of the pixel values, by up to 5
    levels (mean 0.99), while the accurate DCT equals Pillow's decode bit for bit on all of
    them. Decoding the same way here and on the device keeps training and deployment pixels
    identical.
    """
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False),
    )


def list_image_folder(folder):
    """`(paths, labels, class_names)` of a folder of class folders, as Keras lists them.

    `keras.utils.image_dataset_from_directory` gives the order (classes alphabetically, then
    files), the class names (the folder names) and the labels (the class folder's index);
    nothing is decoded.
    """
    import keras

    listing = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", label_mode="int", batch_size=None, shuffle=False,
        verbose=False,
    )
    paths, class_names = list(listing.file_paths), list(listing.class_names)
    labels = [class_names.index(os.path.relpath(p, folder).split(os.sep)[0]) for p in paths]
    return paths, labels, class_names


def read_images(paths, labels, image_size, num_channels):
    """Unbatched `(float32 image, int32 label)` dataset of image files: decoded by
    `decode_image`, resized bilinearly as Keras' loader does (a no-op at the native size)."""

    def read(path, label):
        image = tf.image.resize(decode_image(tf.io.read_file(path), num_channels), image_size)
        image.set_shape((*image_size, num_channels))
        return image, tf.cast(label, tf.int32)

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    return ds.map(read, num_parallel_calls=AUTOTUNE)


def _read_image_folder(folder, image_size, num_channels):
    """All images of a folder of class folders, in sorted file order, unbatched."""
    paths, labels, class_names = list_image_folder(folder)
    return read_images(paths, labels, image_size, num_channels), class_names, len(paths)


def _subset(ds, mask):
    """The elements of `ds` whose index has `mask[index]` True (order kept)."""
    table = tf.constant(mask)
    return ds.enumerate().filter(lambda i, _: table[i]).map(lambda _, xy: xy)


def _carve(n, fraction, seed, argument):
    """A seeded boolean mask selecting `round(n * fraction)` of `n` examples."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a fraction in [0, 1). "
            f"Received: {argument}={fraction!r}"
        )
    chosen = np.random.default_rng(seed).permutation(n)[: int(round(n * fraction))]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def from_directory(path, *, batch_size=128, seed=0, validation_split=0.1, test_split=0.1,
                   image_size=None, cache=True):
    """Images in class folders as `DataSplits` of raw pixels (float32 in [0, 255]).

    Lists the files with `keras.utils.image_dataset_from_directory` (class names are the
    folder names, in alphabetical order; labels are integers) and decodes them with
    `decode_image`: JPEG with the accurate integer DCT, bit for bit what Pillow (the edge
    runner) decodes. `path` holds either `train/` and `test/`
    folders of class folders, or class folders directly; then `test_split` of the images
    (seeded) become the test split. `validation_split` of the training images (seeded,
    disjoint) become `DataSplits.validation`, for choosing hyperparameters; the test split
    is for the final score only.

    Images are decoded once and cached in memory (as uint8 when no resizing is needed).
    Without `image_size` every image is read at the size of the first one (others are
    resized to it, bilinearly); the models see raw pixels, so normalisation belongs in the
    model (see `keras_kd.models.pixel_normalization`).

    Args:
        path: the folder.
        batch_size: examples per batch.
        seed: seed of the validation/test carving and of the shuffling.
        validation_split: fraction of the training images held out for validation (0: none).
        test_split: fraction of all images held out for testing, for a folder without
            `train/` and `test/`.
        image_size: `(height, width)`, or None for the size of the first image.
        cache: keep the decoded images in memory.

    Returns:
        `DataSplits` with `scale=1.0` (raw pixels).
    """
    batch_size = checks.positive_int("batch_size", batch_size)
    path = os.fspath(path)
    split_folders = all(_has_class_folders(os.path.join(path, d)) for d in ("train", "test"))
    probe = tf.io.decode_image(tf.io.read_file(_first_image(path)), expand_animations=False)
    native = tuple(int(d) for d in probe.shape[:2])
    image_size = native if image_size is None else tuple(int(d) for d in image_size)
    channels = int(probe.shape[-1])
    exact = image_size == native  # no resizing: pixels stay integers, cache them as uint8

    if split_folders:
        train, class_names, n_train = _read_image_folder(
            os.path.join(path, "train"), image_size, channels)
        test, test_names, n_test = _read_image_folder(
            os.path.join(path, "test"), image_size, channels)
        if test_names != class_names:
            raise ValueError(
                f"Invalid image folder {path!r}: train/ and test/ have different class folders. "
                f"Received: train={class_names}, test={test_names}"
            )
    else:
        everything, class_names, n_all = _read_image_folder(path, image_size, channels)
        is_test = _carve(n_all, test_split, seed, "test_split")
        train, test = _subset(everything, ~is_test), _subset(everything, is_test)
        n_train, n_test = int((~is_test).sum()), int(is_test.sum())
    is_val = _carve(n_train, validation_split, seed + 1, "validation_split")
    n_val = int(is_val.sum())
    validation = _subset(train, is_val) if n_val else None
    train = _subset(train, ~is_val) if n_val else train

    def stored(x, y):
        return (tf.cast(x, tf.uint8) if exact else x), tf.cast(y, tf.int64)

    def ready(ds, training, size):
        # known length (filtering hides it): Keras then shows progress and steps per epoch
        ds = ds.apply(tf.data.experimental.assert_cardinality(size))
        return pipeline(ds.map(stored, num_parallel_calls=AUTOTUNE), batch_size,
                        training=training, seed=seed, size=size, cache=cache, cast=tf.float32)

    n_train -= n_val
    examples = train.apply(tf.data.experimental.assert_cardinality(n_train)).map(
        stored, num_parallel_calls=AUTOTUNE)
    return DataSplits(
        train_examples=examples.cache() if cache else examples,
        train=ready(train, True, n_train),
        test=ready(test, False, n_test),
        validation=ready(validation, False, n_val) if n_val else None,
        num_classes=len(class_names),
        input_shape=(*image_size, channels),
        class_names=class_names,
        scale=1.0,
        name=path,
        train_size=n_train,
        test_size=n_test,
        validation_size=n_val,
    )


def fixed_sample(splits, n, seed=0):
    """A fixed random sample of `n` training examples of `splits` (unbatched, the same on
    every iteration): a smaller training set that still holds every class (folder splits
    list their images class by class)."""
    checks.positive_int("n", n)
    return splits.train_examples.shuffle(splits.train_size, seed=seed,
                                         reshuffle_each_iteration=False).take(n)


def load(source, *, batch_size=128, seed=0, data_dir=None, download=True, cache=True,
         validation_split=None):
    """Loads `source` as batched, prefetched `DataSplits` (see the module docstring).

    Args:
        source: arrays `((x_train, y_train), (x_test, y_test))`, a folder of images (see
            `from_directory`), a `.npz` path, `"digits"`, or a TFDS name.
        batch_size: examples per batch (the global batch under `tf.distribute`).
        seed: shuffling seed.
        data_dir: TFDS data directory.
        download: let TFDS download missing data.
        cache: cache decoded TFDS examples in memory.
        validation_split: fraction of the training examples held out (seeded) as
            `DataSplits.validation` (for TFDS names: the last whole percents of `train`).
            None: 0.1 for a folder of images, 0 otherwise.

    Returns:
        `DataSplits`.

    Raises:
        ValueError: for an unknown source or invalid arguments.
        DatasetUnavailableError: when a TFDS dataset can be neither read nor downloaded.

    Example:

    >>> splits = keras_kd.data.load("../shared/data/mnist.npz", batch_size=64)  # doctest: +SKIP
    """
    held_out = {"validation_split": 0.0 if validation_split is None else validation_split}
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return from_arrays(source[0], source[1], batch_size=batch_size, seed=seed, **held_out)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            "Invalid value for argument `source`. Expected ((x_train, y_train), (x_test, "
            f"y_test)), a folder of images, an .npz path, 'digits' or a TFDS name. "
            f"Received: source={source!r}"
        )
    source = os.fspath(source)
    if os.path.isdir(source):
        return from_directory(source, batch_size=batch_size, seed=seed,
                              validation_split=0.1 if validation_split is None else validation_split)
    if source.endswith(".npz") or os.path.exists(source):
        return from_arrays(*load_npz(source), batch_size=batch_size, seed=seed, name=source,
                           **held_out)
    if source == "digits":
        return from_arrays(
            *load_digits(seed=seed), batch_size=batch_size, seed=seed, name="digits", scale=1 / 16,
            **held_out,
        )
    return load_tfds(
        source, batch_size=batch_size, seed=seed, data_dir=data_dir, download=download, cache=cache,
        **held_out,
    )
