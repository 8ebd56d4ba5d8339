"""`cache_logits` at MNIST scale: no dataset-sized graph constant, a disk cache that refuses
data or a teacher it was not made from."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd as kd
from keras_kd import logits_file
from keras_kd.teachers import dataset_graphs, graph_nodes

MB = 1 << 20


def _const_sizes(graph_def):
    """Bytes of every Const node of a GraphDef, its function library included."""
    return [n.attr["value"].tensor.ByteSize() for n in graph_nodes(graph_def) if n.op == "Const"]


def large_dataset_constants(dataset, limit=MB):
    """Sizes of the constants larger than `limit` that `dataset`'s graph would embed.

    Not `dataset._as_serialized_graph()`: serialising a dataset writes the *values* of the
    variables its functions capture as Const nodes, so it cannot tell a `tf.Variable` (no
    constant, no 2 GB GraphDef limit) from an embedded array. Instead this walks the dataset
    DAG (`_inputs()`, `keras_kd.teachers.dataset_graphs`), reads the FuncGraph of each
    dataset function (`_functions()`: map, filter, ... bodies, where captured variables are
    resource placeholders and embedded arrays are Const nodes) and the tensors that source
    datasets hold (`from_tensor_slices`/`from_tensors` keep them in `_tensors`; they become
    Const nodes whenever the dataset graph is built or serialised)."""
    found = []
    for ds, graphs in dataset_graphs(dataset):
        found += [size for g in graphs for size in _const_sizes(g)]
        found += [t.dtype.size * int(np.prod(t.shape)) for t in
                  tf.nest.flatten(getattr(ds, "_tensors", [])) if hasattr(t, "dtype")]
    return [size for size in found if size > limit]


def _tf_functions(function):
    """The `tf.function`s behind `function`: itself, or those its closure holds (Keras 3
    wraps its compiled `multi_step_on_iterator` in a plain Python `function(iterator)`)."""
    if hasattr(function, "_list_all_concrete_functions"):
        return [function]
    cells = [c.cell_contents for c in function.__closure__ or ()]
    return [c for c in cells if hasattr(c, "_list_all_concrete_functions")]


def large_function_constants(function, limit=MB):
    """Sizes of the constants larger than `limit` in every traced graph of a `tf.function`
    (the body, and the functions it calls, from the GraphDef's library)."""
    graphs = [c.graph.as_graph_def() for f in _tf_functions(function)
              for c in f._list_all_concrete_functions()]
    assert graphs, "the function was never traced"
    return [s for g in graphs for s in _const_sizes(g) if s > limit]


def _teacher(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="tiny_teacher")


def _student():
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))


def _from_variables(x, y, batch_size=1000):
    """A deterministic dataset of (x, y) batches with no constant: the arrays in variables."""
    xv, yv = tf.Variable(x, trainable=False), tf.Variable(y, trainable=False)
    return tf.data.Dataset.range(len(x)).batch(batch_size).map(
        lambda i: (tf.gather(xv, i), tf.gather(yv, i)))


def test_the_inspection_finds_embedded_arrays():
    """The checks below can fail: an array given to `from_tensor_slices` or captured by a map
    function is found; the same array in a variable is not."""
    big = np.zeros((300_000, 10), "float32")  # 12 MB
    assert large_dataset_constants(tf.data.Dataset.from_tensor_slices(big).batch(8)) == [12_000_000]
    captured = tf.data.Dataset.range(4).map(lambda i: tf.gather(big, i))
    assert len(large_dataset_constants(captured)) == 1
    variable = tf.Variable(big)
    assert large_dataset_constants(tf.data.Dataset.range(4).map(lambda i: tf.gather(variable, i))) == []

    @tf.function
    def embeds(i):
        return tf.gather(tf.constant(big), i)

    embeds(0)
    assert len(large_function_constants(embeds)) == 1


def test_cache_logits_on_60000_mnist_images_embeds_no_large_constant(mnist):
    (x, y), _ = mnist
    assert len(x) == 60_000
    teacher = _teacher()
    plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(1000)
    assert large_dataset_constants(plain)  # the user's pipeline embeds the 188 MB array...
    cached = kd.teachers.cache_logits(teacher, plain)
    assert large_dataset_constants(cached) == []  # ...what fit iterates embeds nothing
    assert int(cached.cardinality()) == 60
    first, labels = next(iter(cached))
    np.testing.assert_array_equal(first["inputs"], x[:1000])
    np.testing.assert_array_equal(labels, y[:1000])
    np.testing.assert_allclose(first["teacher_logits"], teacher(x[:1000]), rtol=1e-5, atol=1e-5)

    for steps_per_execution in (5, 1):
        distiller = kd.Distiller(_student(), teacher)
        distiller.compile(optimizer="sgd", alpha=0.1, temperature=4.0,
                          steps_per_execution=steps_per_execution)
        history = distiller.fit(cached, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0])
        # 5 steps per execution: the cache is read one execution at a time, gathered in the
        # compiled execution (keras_kd.fit_arrays.ExecutionBlocks); 1: Keras' own loop
        ran = list(distiller._executions._compiled.values()) or [distiller.train_function]
        assert len(ran) == 1 and (steps_per_execution == 1) == (distiller.train_function
                                                                is not None)
        assert large_function_constants(ran[0]) == []


def test_disk_cache_streams_logits_and_refuses_other_data_or_teacher(mnist, tmp_path):
    (x, y), _ = mnist
    teacher = _teacher()
    path = tmp_path / "mnist.logits"
    data = _from_variables(x, y)
    cached = kd.teachers.cache_logits(teacher, data, path=path)
    assert os.path.getsize(path) == logits_file.read_header(path)[2] + 60_000 * 10 * 4
    assert large_dataset_constants(cached) == []
    logits = np.concatenate([b["teacher_logits"] for b, _ in cached.take(3)])
    np.testing.assert_allclose(logits, teacher(x[:3000]), rtol=1e-5, atol=1e-5)

    # reused: the file is read, not rewritten, and gives the same batches
    mtime = os.stat(path).st_mtime_ns
    again = kd.teachers.cache_logits(teacher, data, path=path)
    assert os.stat(path).st_mtime_ns == mtime
    np.testing.assert_array_equal(next(iter(again))[0]["teacher_logits"], logits[:1000])

    other_teacher = _teacher(seed=1)
    with pytest.raises(ValueError, match="other teacher than requested"):
        kd.teachers.cache_logits(other_teacher, data, path=path)
    with pytest.raises(ValueError, match="other teacher_dtype"):
        kd.teachers.cache_logits(teacher, data, path=path, teacher_dtype="bfloat16")
    with pytest.raises(ValueError, match="other data"):
        kd.teachers.cache_logits(teacher, _from_variables(x[::-1], y[::-1]), path=path)
    with pytest.raises(ValueError, match="other data, element_spec"):
        kd.teachers.cache_logits(teacher, data.map(lambda a, b: (a[:, ::2], b)), path=path)
    # same first batches, fewer examples: refused up front (known cardinality)...
    with pytest.raises(ValueError, match="60000 examples, but `dataset` has 30 batches"):
        kd.teachers.cache_logits(teacher, data.take(30), path=path)
    (tmp_path / "other").write_bytes(b"not a cache")
    with pytest.raises(ValueError, match="is not a keras_kd cache"):
        kd.teachers.cache_logits(teacher, data, path=tmp_path / "other")
    (tmp_path / "saved_dataset").mkdir()  # e.g. a former `tf.data.Dataset.save` cache
    with pytest.raises(ValueError, match="is not a keras_kd cache"):
        kd.teachers.cache_logits(teacher, data, path=tmp_path / "saved_dataset")


def test_disk_cache_checks_the_number_and_sizes_of_batches_as_the_data_streams(tmp_path):
    x = np.random.default_rng(0).random((100, 28, 28, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(100))).batch(10)
    teacher, path = _teacher(), tmp_path / "c"
    kd.teachers.cache_logits(teacher, data, path=path)
    hidden = lambda ds: ds.filter(lambda a, b: True)  # noqa: E731  (cardinality unknown)
    shorter = kd.teachers.cache_logits(teacher, hidden(data.take(5)), path=path)
    with pytest.raises(tf.errors.FailedPreconditionError, match="10 elements"):
        list(shorter)
    longer = kd.teachers.cache_logits(teacher, hidden(data.concatenate(data.skip(9))), path=path)
    with pytest.raises(tf.errors.FailedPreconditionError, match="10 elements"):
        list(longer)
    rebatched = kd.teachers.cache_logits(
        teacher, hidden(data.take(2).concatenate(data.unbatch().skip(20).batch(15))), path=path)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not the size of the batch"):
        list(rebatched)


@pytest.mark.parametrize("on_disk", [False, True])
def test_shuffled_cache_keeps_each_example_with_its_logits(tmp_path, on_disk):
    rng = np.random.default_rng(0)
    x = rng.random((100, 28, 28, 1)).astype("float32")
    y = np.arange(100)
    teacher = _teacher()
    cached = kd.teachers.cache_logits(
        teacher, tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
        path=tmp_path / "c" if on_disk else None, shuffle_buffer=100, seed=0)
    assert cached.options().autotune.enabled is False  # data.prefetched: no epoch-end wait
    epochs = []
    for _ in range(2):
        order = []
        for features, labels in cached:
            np.testing.assert_allclose(features["teacher_logits"], teacher(x[labels.numpy()]),
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(features["inputs"], x[labels.numpy()])
            order.extend(labels.numpy())
        assert sorted(order) == list(range(100))
        epochs.append(order)
    assert epochs[0] != epochs[1]  # reshuffled each epoch
