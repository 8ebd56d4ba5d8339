"""Why an image classifier's int8 file disagrees with its Keras model: one file per suspect.

    python benchmarks/int8_error.py runs/cifar10/students_lr1e-2/cnn-small_keras_kd_s0.keras
    python benchmarks/int8_error.py MODEL.keras --data ../shared/data/cifar10 --samples 500 5000

Every file is compared with the Keras model on the whole test split (`keras_kd.export.verify`:
top-1 agreement, max |logit difference|, the largest Keras top-2 margin among the flips, exact
top-2 ties in the file's output) and on the test files `keras_kd.edge_parity.check` picks (the
file on the loader's pixels; the edge runner gives the same predictions, see that function):

- `int8 N`: full integer, calibrated (min/max) on the first N images of one pass over the
  shuffled training split, N in `--samples` (the library default is 500);
- `int8, OP float`: the same 500-image calibration with one operator left in float
  (TensorFlow's `QuantizationDebugger`, selective quantization), for every quantized operator;
- `16x8`: int8 weights, int16 activations: what the weight rounding alone costs;
- `dynamic` (int8 weights, float activations quantized on the fly) and `float16`.

Writes OUT.json and OUT.md (default results/int8_error).
"""

import argparse
import csv
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import REPO, markdown_table, write_outputs  # noqa: E402

from keras_kd import data, export  # noqa: E402


def edge_pixels(model, folder, limit):
    """The pixels of the `limit` files `keras_kd.edge_parity.check` picks in `folder`."""
    paths, labels, _ = data.list_image_folder(folder)
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).astype(int))
    size = tuple(int(d) for d in model.inputs[0].shape[1:3])
    images = data.read_images([paths[i] for i in chosen], [labels[i] for i in chosen], size,
                              int(model.inputs[0].shape[-1]))
    return np.stack([x.numpy() for x, _ in images])


def quantized(model, saved_model, calibration, ops_set=tf.lite.OpsSet.TFLITE_BUILTINS_INT8):
    """A converter calibrated on the first 500 images of `calibration`, as `export.convert`."""
    converter = export.saved_model_converter(model, saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = export._representative(calibration, 500)
    converter.target_spec.supported_ops = [ops_set]
    return converter


def int8_variants(model, calibration, samples, debug_images, layers):
    """`(name, flatbuffer)` of every file the benchmark compares; appends to `layers` the
    `QuantizationDebugger` statistics of each quantized tensor of the 500-image int8 file."""
    for n in samples:
        yield f"int8 {n}", export.convert(model, "int8", calibration[:n], n)

    def debug_dataset():
        for i in range(len(debug_images)):
            yield [debug_images[i : i + 1]]

    with tempfile.TemporaryDirectory() as saved_model:
        def debugger(denylisted_nodes=None):
            return tf.lite.experimental.QuantizationDebugger(
                converter=quantized(model, saved_model, calibration), debug_dataset=debug_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_nodes=denylisted_nodes))

        statistics = debugger()
        statistics.run()
        dump = io.StringIO()
        statistics.layer_statistics_dump(dump)
        for row in csv.DictReader(io.StringIO(dump.getvalue())):
            scale, rmse = float(row["scale"]), float(row["mean_squared_error"]) ** 0.5
            tensor = row["tensor_name"]  # e.g. "model/stage1_relu/Relu;model/stage1_bn/..."
            layer = tensor.split(";")[0].split("/")[1] if "/" in tensor else tensor
            layers.append({"op": f"{row['op_name']} ({layer})", "tensor": tensor, "scale": scale,
                           "rmse": rmse, "rmse_per_step": rmse / scale})
            if row["op_name"] != "MAX_POOL_2D":  # max pooling keeps its input's scale
                yield (f"int8, {layers[-1]['op']} float",
                       debugger([tensor]).get_nondebug_quantized_model())
        int16 = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        yield "16x8", quantized(model, saved_model, calibration, int16).convert()
    for mode in ("dynamic", "float16"):
        yield mode, export.convert(model, mode)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a .keras image classifier taking raw pixels")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--samples", type=int, nargs="+", default=[500, 2000, 5000])
    p.add_argument("--edge-files", type=int, default=100)
    p.add_argument("--debug-images", type=int, default=256,
                   help="test images for the per-tensor error statistics")
    p.add_argument("--out", default="results/int8_error")
    args = p.parse_args(argv)

    model = keras.saving.load_model(args.model)
    splits = data.load(args.data, batch_size=256, seed=0)
    calibration = np.concatenate(
        [x for x, _ in data.numpy_batches(splits.train, max(args.samples))])
    pixels = edge_pixels(model, os.path.join(args.data, "test"), args.edge_files)
    keras_top1 = np.asarray(model(pixels, training=False)).argmax(-1)
    test_images = next(data.numpy_batches(splits.test, args.debug_images))[0]
    rows, layers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        variants = int8_variants(model, calibration, args.samples, test_images, layers)
        for name, flatbuffer in variants:
            path = os.path.join(tmp, "file.tflite")
            with open(path, "wb") as f:
                f.write(flatbuffer)
            r = export.verify(model, path, splits.test, latency_repeats=5)
            runner = export.litert_runner.Runner(export._interpreter(model_path=path))
            rows.append({"file": name, "size_bytes": r["size_bytes"],
                         "keras_acc": 100 * r["keras_accuracy"],
                         "tflite_acc": 100 * r["tflite_accuracy"],
                         "agreement": 100 * r["top1_agreement"], "max_abs_diff": r["max_abs_diff"],
                         "flip_margin": r["disagreement_max_keras_margin"],
                         "ties": r["tflite_top2_ties"],
                         "edge_agree": int((runner(pixels).argmax(-1) == keras_top1).sum())})
            print(rows[-1], flush=True)
    columns = [("file", "file", "s"), ("size_bytes", "bytes", ","), ("keras_acc", "Keras %", ".2f"),
               ("tflite_acc", "file %", ".2f"), ("agreement", "agreement %", ".2f"),
               ("max_abs_diff", "max abs diff", ".2f"),
               ("flip_margin", "largest margin flipped", ".3f"), ("ties", "top-2 ties", "d"),
               ("edge_agree", f"= Keras on {len(pixels)} edge files", "d")]
    layer_columns = [("op", "op", "s"), ("scale", "int8 step", ".4f"), ("rmse", "RMSE", ".4f"),
                     ("rmse_per_step", "RMSE / step", ".3f")]
    markdown = markdown_table(rows, columns) + "\n" + markdown_table(layers, layer_columns)
    write_outputs({"model": args.model, "examples": r["examples"], "rows": rows,
                   "layers": layers}, args.out, markdown)


if __name__ == "__main__":
    main()
