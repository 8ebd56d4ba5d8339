"""Datasets for distillation: TFDS names, `.npz` files, scikit-learn's digits, numpy arrays.

Everything ends as `DataSplits`: batched, prefetched `tf.data` train and test pipelines of
float32 images scaled to [0, 1] with integer labels, plus what export needs to know
(input shape, number of classes, class names, the normalisation applied).

Sources, in the order `load` tries them:
- a tuple `((x_train, y_train), (x_test, y_test))` of numpy arrays;
- a path to an `.npz` in the `keras.datasets` layout (`x_train`, `y_train`, `x_test`, `y_test`);
- `"digits"`: scikit-learn's bundled 8x8 digits (no download; needs scikit-learn);
- any other string: a TFDS name such as `"mnist"` or `"cifar10"` (downloads on first use).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_kd import checks

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
        train_size: number of training examples (None when the source does not say).
        test_size: number of test examples (None when the source does not say).
        validation: batched `tf.data.Dataset` of `(x, y)` held out from the training data
            (`validation_split`), or None.
        validation_size: number of validation examples (0 without a validation split).
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


def _pipeline(ds, batch_size, training, seed, size, cache, shard_policy=None):
    """Cache, shuffle, batch, prefetch. Under multi-worker training `fit` shards the result
    across workers: in-memory sources shard by example (`DATA`), TFDS sources keep `AUTO`
    (by file when there are enough files, else by example)."""
    if shard_policy is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard_policy
        ds = ds.with_options(options)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(size, 60000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


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
    (N, H, W) images get a channel axis. `validation_split` holds out that fraction of the
    training examples (chosen with `seed`) as `DataSplits.validation`.
    """
    batch_size = checks.positive_int("batch_size", batch_size)
    (x_train, y_train), (x_test, y_test) = train, test
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train, y_test = np.asarray(y_train).astype("int64"), np.asarray(y_test).astype("int64")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            "Invalid arrays: x and y differ in length. Received: "
            f"x_train={len(x_train)}, y_train={len(y_train)}, x_test={len(x_test)}, "
            f"y_test={len(y_test)}"
        )
    scale = _scale_for(x_train.dtype) if scale is None else float(scale)
    x_train, x_test = _images(x_train, scale), _images(x_test, scale)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    (x_train, y_train), (x_val, y_val) = _hold_out(x_train, y_train, validation_split, seed)
    return DataSplits(
        train=_pipeline(
            tf.data.Dataset.from_tensor_slices((x_train, y_train)),
            batch_size, True, seed, len(x_train), cache=False, shard_policy=DATA_SHARDING,
        ),
        test=_pipeline(
            tf.data.Dataset.from_tensor_slices((x_test, y_test)),
            batch_size, False, seed, len(x_test), cache=False, shard_policy=DATA_SHARDING,
        ),
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[1:]),
        class_names=list(class_names) if class_names else [str(i) for i in range(num_classes)],
        scale=scale,
        name=name,
        train_size=len(x_train),
        test_size=len(x_test),
        validation=_pipeline(
            tf.data.Dataset.from_tensor_slices((x_val, y_val)),
            batch_size, False, seed, len(x_val), cache=False, shard_policy=DATA_SHARDING,
        ) if len(x_val) else None,
        validation_size=len(x_val),
    )


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
    image_key = next(k for k, f in info.features.items() if k != "label")
    dtype = info.features[image_key].dtype
    scale = _scale_for(dtype.as_numpy_dtype if hasattr(dtype, "as_numpy_dtype") else dtype)

    def normalize(x, y):
        return tf.cast(x, tf.float32) * scale, tf.cast(y, tf.int64)

    label = info.features["label"]
    sizes = {}
    for split in ("train", "test"):
        try:
            sizes[split] = info.splits[split].num_examples
        except KeyError:  # split sizes not recorded (e.g. under tfds.testing.mock_data)
            sizes[split] = None
    return DataSplits(
        train=_pipeline(train.map(normalize, num_parallel_calls=AUTOTUNE), batch_size, True, seed,
                        sizes["train"] or 60000, cache),
        test=_pipeline(test.map(normalize, num_parallel_calls=AUTOTUNE), batch_size, False, seed,
                       sizes["test"] or 10000, cache),
        num_classes=label.num_classes,
        input_shape=tuple(info.features[image_key].shape),
        class_names=list(label.names),
        scale=scale,
        name=f"tfds:{name}",
        train_size=sizes["train"],
        test_size=sizes["test"],
        validation=_pipeline(validation[0].map(normalize, num_parallel_calls=AUTOTUNE), batch_size,
                             False, seed, 10000, cache) if validation else None,
    )


def load(source, *, batch_size=128, seed=0, data_dir=None, download=True, cache=True,
         validation_split=0.0):
    """Loads `source` as batched, prefetched `DataSplits` (see the module docstring).

    Args:
        source: arrays `((x_train, y_train), (x_test, y_test))`, a `.npz` path, `"digits"`,
            or a TFDS name.
        batch_size: examples per batch (the global batch under `tf.distribute`).
        seed: shuffling seed.
        data_dir: TFDS data directory.
        download: let TFDS download missing data.
        cache: cache decoded TFDS examples in memory.
        validation_split: fraction of the training examples held out (seeded) as
            `DataSplits.validation` (for TFDS names: the last whole percents of `train`).

    Returns:
        `DataSplits`.

    Raises:
        ValueError: for an unknown source or invalid arguments.
        DatasetUnavailableError: when a TFDS dataset can be neither read nor downloaded.

    Example:

    >>> splits = keras_kd.data.load("../shared/data/mnist.npz", batch_size=64)  # doctest: +SKIP
    """
    held_out = {"validation_split": validation_split}
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return from_arrays(source[0], source[1], batch_size=batch_size, seed=seed, **held_out)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            "Invalid value for argument `source`. Expected ((x_train, y_train), (x_test, "
            f"y_test)), an .npz path, 'digits' or a TFDS name. Received: source={source!r}"
        )
    source = os.fspath(source)
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
