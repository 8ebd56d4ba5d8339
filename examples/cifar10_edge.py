"""CIFAR-10 student to the edge: float32 and int8 `.tflite` files, verified on the 10,000 test
images, and the edge runner (LiteRT + Pillow, no TensorFlow) on raw test JPEG files.

    python examples/cifar10.py --save-dir runs/cifar10/students ...   # trains and saves students
    python examples/cifar10_edge.py runs/cifar10/students/mobile-small_keras_kd_s0.keras

Writes `OUTPUT_DIR/<model>_{float32,int8}.tflite` (with their sidecars) and a JSON report (the
`keras_kd.export.verify` report of each file, and `keras_kd.edge_parity.check` of the int8 file
on `--edge-files` raw JPEG files spread over the test folder's classes).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_kd import atomic, data, edge_parity, export  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a trained student (.keras), raw 0-255 pixel input")
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "cifar10"))
    p.add_argument("--output-dir", default="runs/cifar10/tflite")
    p.add_argument("--edge-files", type=int, default=100)
    p.add_argument("--out", default=None, help="JSON report (default: OUTPUT_DIR/<model>.json)")
    args = p.parse_args()

    model = keras.saving.load_model(args.model)
    splits = data.load(args.data, batch_size=256, seed=0)
    name = os.path.splitext(os.path.basename(args.model))[0]
    report = {"model": args.model, "data": args.data}
    for quantization in ("float32", "int8"):
        path = os.path.join(args.output_dir, f"{name}_{quantization}.tflite")
        _, row = export.to_tflite_and_verify(model, path, splits, quantization=quantization)
        report[quantization] = row
        print(f"{quantization}: {row['size_bytes']:,} bytes, Keras {row['keras_accuracy']:.4f}, "
              f"TFLite {row['tflite_accuracy']:.4f}, agreement {row['top1_agreement']:.4f} "
              f"on {row['examples']} test images")
    report["edge"] = edge_parity.check(model, path, os.path.join(args.data, "test"),
                                       limit=args.edge_files)
    print("edge runner on raw JPEG files:", json.dumps(report["edge"]))
    out = args.out or os.path.join(args.output_dir, f"{name}.json")
    atomic.write_json(out, report)
    print("report:", out)


if __name__ == "__main__":
    main()
