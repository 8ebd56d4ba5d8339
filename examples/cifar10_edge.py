"""CIFAR-10 student to the edge: float32 and int8 `.tflite` files, verified on the 10,000 test
images, and the edge runner (LiteRT + Pillow, no TensorFlow) on raw test JPEG files.

    python examples/cifar10.py --save-dir runs/cifar10/students ...   # trains and saves students
    python examples/cifar10_edge.py runs/cifar10/students/mobile-small_keras_kd_s0.keras

Writes `OUTPUT_DIR/<model>_{float32,int8}.tflite` (with their sidecars) and a JSON report (the
`keras_kd.export.verify` report of each file, and `keras_kd.edge_parity.check` of the int8 file
on `--edge-files` raw JPEG files spread over the test folder's classes).

With `--qat-teacher TEACHER.keras` the student is first distilled quantization-aware from that
teacher (`keras_kd.optimize.native.quantize_distill`, `--qat-epochs` epochs at `--qat-lr`, on
the training split without augmentation) and saved as `OUTPUT_DIR/<model>_qat.keras`: the
files are exported from that QAT model, which is then the Keras model the report compares them
with. Its int8 file computes what it computes (trained ranges, folded preprocessing), where a
post-training int8 file of a float student flips its near-ties.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_kd import atomic, data, edge_parity, export  # noqa: E402


def _quantization_aware(args, model, name, splits):
    """The QAT student: reloaded from OUTPUT_DIR if a previous run saved it, else distilled
    on the training split (batched at --batch-size, shuffled from --seed)."""
    from keras_kd.optimize import native

    path = os.path.join(args.output_dir, f"{name}_qat.keras")
    if os.path.exists(path):
        print("reusing", path)
        return keras.saving.load_model(path), path
    keras.utils.set_random_seed(args.seed)
    teacher = keras.saving.load_model(args.qat_teacher)
    train = data.pipeline(splits.train_examples, args.batch_size, training=True,
                          seed=args.seed, cast="float32")
    train = train.take(args.qat_steps) if args.qat_steps else train
    result = native.quantize_distill(model, teacher, train, epochs=args.qat_epochs,
                                     alpha=args.alpha, temperature=args.temperature,
                                     learning_rate=args.qat_lr, verbose=2)
    atomic.save_model(result.model, path)
    return result.model, path


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a trained student (.keras), raw 0-255 pixel input")
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "cifar10"))
    p.add_argument("--output-dir", default="runs/cifar10/tflite")
    p.add_argument("--edge-files", type=int, default=100)
    p.add_argument("--out", default=None, help="JSON report (default: OUTPUT_DIR/<model>.json)")
    p.add_argument("--qat-teacher", default=None,
                   help="distil the student quantization-aware from this teacher first")
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-steps", type=int, default=0,
                   help="batches per QAT epoch (0: the whole training split)")
    p.add_argument("--qat-lr", type=float, default=1e-4)
    p.add_argument("--alpha", type=float, default=0.5, help="QAT: weight of the hard loss")
    p.add_argument("--temperature", type=float, default=1.0, help="QAT: KD temperature")
    p.add_argument("--batch-size", type=int, default=128, help="QAT batch size")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for flag in ("qat_epochs", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.qat_steps < 0 or args.qat_lr <= 0:
        p.error(f"--qat-steps must be >= 0 and --qat-lr > 0, got {args.qat_steps} and "
                f"{args.qat_lr}")

    model = keras.saving.load_model(args.model)
    name = os.path.splitext(os.path.basename(args.model))[0]
    report = {"model": args.model, "data": args.data}
    splits = data.load(args.data, batch_size=256, seed=0)
    if args.qat_teacher:
        os.makedirs(args.output_dir, exist_ok=True)
        model, qat_path = _quantization_aware(args, model, name, splits)
        report["qat"] = {"model": qat_path, "teacher": args.qat_teacher,
                         "epochs": args.qat_epochs, "steps_per_epoch": args.qat_steps or None,
                         "learning_rate": args.qat_lr, "alpha": args.alpha,
                         "temperature": args.temperature, "batch_size": args.batch_size,
                         "seed": args.seed}
        name = f"{name}_qat"
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
