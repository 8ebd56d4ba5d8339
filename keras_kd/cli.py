"""`keras-kd`: train a teacher, distil a student, evaluate, export and verify, run the demo.

Every command prints Keras progress bars and writes its results as JSON (`--results`).
Run `keras-kd COMMAND --help` for the options of a command.
"""

import argparse
import os
import sys

DEMO_STEPS = """The demo: on scikit-learn's bundled 8x8 digits (no download) it trains a 2x1200
teacher, then pairs of 2x20 students (from scratch, and distilled from the same initial
weights; one seed per pair), exports the first distilled student to TFLite (float32 and int8)
and the teacher and scratch student (float32), verifies every file against its Keras model and
prints a table and a report (report.md, PNG plots)."""


def _write_json(path, results):
    from keras_kd import atomic

    if path:
        print(f"results written to {atomic.write_json(path, results)}")


def _add_data_args(p):
    p.add_argument("--data", default="digits",
                   help="dataset: 'digits' (bundled with scikit-learn, no download), a .npz in the "
                        "keras.datasets layout (e.g. mnist.npz), or a TFDS name such as 'mnist' "
                        "(downloads on first use). Default: digits")
    p.add_argument("--batch-size", type=int, default=128,
                   help="global batch size (split across replicas under a strategy). Default: 128")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights and shuffling")
    p.add_argument("--results", default=None, help="write the results to this JSON file")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch")


def _add_train_args(p, epochs):
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs. Default: {epochs}")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="Adam learning rate (cosine-decayed to 1%% over the run). Default: 1e-3")
    p.add_argument("--mixed-precision", default="off",
                   choices=("off", "auto", "mixed_float16", "mixed_bfloat16"),
                   help="compute dtype of the trained model: auto = mixed_float16 on GPUs, "
                        "mixed_bfloat16 on CPUs with bf16 instructions. Default: off (float32)")


def _load_model(spec, splits):
    """A reference model name (see keras_kd.models.names()) or a .keras file."""
    import keras

    from keras_kd import models

    if spec.endswith(".keras") or os.path.exists(spec):
        return keras.saving.load_model(spec)
    return models.build(spec, splits.input_shape, splits.num_classes)


def cmd_train_teacher(args):
    import keras

    from keras_kd import atomic, data, precision, workflows

    keras.utils.set_random_seed(args.seed)
    precision.enable(args.mixed_precision)
    splits = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    teacher = _load_model(args.model, splits)
    results = workflows.train_supervised(teacher, splits, epochs=args.epochs, lr=args.lr,
                                         verbose=args.verbose)
    atomic.save_model(teacher, args.output)
    results.update(command="train-teacher", data=splits.name, output=args.output)
    print(f"teacher test accuracy {results['test_accuracy']:.4f}, saved to {args.output}")
    _write_json(args.results, results)
    return results


def cmd_distill(args):
    import keras

    from keras_kd import atomic, data, distribute, precision, workflows

    keras.utils.set_random_seed(args.seed)
    precision.enable(args.mixed_precision)
    strategy = distribute.get_strategy(args.strategy)
    splits = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    with strategy.scope():
        teacher = keras.saving.load_model(args.teacher)
        student = _load_model(args.student, splits)
        results, _ = workflows.distill(
            student, teacher, splits, epochs=args.epochs, alpha=args.alpha,
            temperature=args.temperature, distillation_loss_fn=args.loss, lr=args.lr,
            verbose=args.verbose,
        )
    atomic.save_model(student, args.output)
    results.update(command="distill", data=splits.name, teacher=args.teacher, output=args.output,
                   strategy=type(strategy).__name__, replicas=strategy.num_replicas_in_sync,
                   global_batch_size=args.batch_size,
                   per_replica_batch_size=args.batch_size // strategy.num_replicas_in_sync)
    print(f"distilled student test accuracy {results['test_accuracy']:.4f}, saved to {args.output}")
    _write_json(args.results, results)
    return results


def cmd_evaluate(args):
    import keras

    from keras_kd import data, workflows

    splits = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    model = keras.saving.load_model(args.model)
    results = {"command": "evaluate", "model": args.model, "data": splits.name,
               **workflows.model_facts(model), "test_accuracy": workflows.accuracy(model, splits),
               "file_bytes": os.path.getsize(args.model)}
    print(f"{args.model}: test accuracy {results['test_accuracy']:.4f}, "
          f"{results['params']:,} parameters")
    _write_json(args.results, results)
    return results


def cmd_export(args):
    import keras

    from keras_kd import data, export

    model = keras.saving.load_model(args.model)
    splits = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    metadata = export.to_tflite(
        model, args.output, quantization=args.quantization, representative_data=splits.train,
        max_calibration_samples=args.calibration_samples, int8_io=args.int8_io,
        allow_tf_ops=args.allow_tf_ops, splits=splits,
    )
    report = export.verify(model, args.output, splits.test)
    _print_report(report)
    results = {"command": "export", "model": args.model, "metadata": metadata, "verify": report}
    _write_json(args.results, results)
    return results


def cmd_verify(args):
    import keras

    from keras_kd import data, export

    model = keras.saving.load_model(args.model)
    splits = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    report = export.verify(model, args.tflite, splits.test)
    _print_report(report)
    _write_json(args.results, {"command": "verify", "model": args.model, "verify": report})
    return report


def _print_report(report):
    from keras_kd import workflows

    row = {**report, "name": os.path.basename(report["file"])}
    print(workflows.table([row], workflows.EXPORT_COLUMNS))
    if report["flex_ops"]:
        print(f"WARNING: the file needs the Flex delegate for {report['flex_ops']}")


def cmd_demo(args):
    from keras_kd import demo

    results = demo.run(output_dir=args.output_dir, teacher_epochs=args.teacher_epochs,
                       student_epochs=args.student_epochs, seed=args.seed, verbose=args.verbose,
                       pairs=args.pairs)
    print(f"\ndemo finished in {results['total_seconds']:.0f} s; files and results.json in "
          f"{args.output_dir}")
    _write_json(args.results, results)  # an extra copy where asked
    return results


def cmd_report(args):
    from keras_kd import report

    path = report.write(args.results_file, args.output_dir)
    print(f"report written to {path} (with curves.png and tradeoffs.png)")
    return path


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-kd", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train-teacher", help="train a teacher on the labels")
    _add_data_args(p)
    _add_train_args(p, epochs=20)
    p.add_argument("--model", default="mlp-teacher",
                   help="reference model (mlp-teacher, cnn-teacher, ...) or a .keras file. "
                        "Default: mlp-teacher (2x1200, dropout)")
    p.add_argument("--output", default="teacher.keras", help="where to save the trained teacher")
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="distil a teacher into a student")
    _add_data_args(p)
    _add_train_args(p, epochs=20)
    p.add_argument("--teacher", required=True, help="trained teacher (.keras, outputs logits)")
    p.add_argument("--student", default="mlp-student",
                   help="reference model (mlp-student 2x800, mlp-tiny 2x20, cnn-student) or a "
                        ".keras file. Default: mlp-student")
    p.add_argument("--alpha", type=float, default=0.1,
                   help="weight of the hard-label loss; 1-alpha weighs the distillation loss. "
                        "Default: 0.1")
    p.add_argument("--temperature", type=float, default=4.0, help="softening temperature T. Default: 4")
    p.add_argument("--loss", default="kl_divergence",
                   choices=("kl_divergence", "soft_target_crossentropy", "logits_mse"),
                   help="distillation loss. Default: kl_divergence (times T^2)")
    p.add_argument("--strategy", default="auto",
                   help="tf.distribute strategy: auto, default, mirrored, multi_worker, tpu. "
                        "Default: auto (TPU if found, multi-worker if TF_CONFIG names several "
                        "workers, mirrored if several GPUs, else default)")
    p.add_argument("--output", default="student.keras", help="where to save the student")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("evaluate", help="test accuracy and size of a saved model")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="a .keras model outputting logits")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a .keras model to TFLite and verify the file")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the trained .keras model (outputs logits)")
    p.add_argument("--output", required=True, help="the .tflite file to write (sidecars beside it)")
    p.add_argument("--quantization", default="float32",
                   choices=("float32", "float16", "dynamic", "int8"),
                   help="float32 (exact), float16 (half-size weights), dynamic (int8 weights), "
                        "int8 (full integer, calibrated on --data's training split). "
                        "Default: float32")
    p.add_argument("--calibration-samples", type=int, default=500,
                   help="representative samples for int8 calibration. Default: 500")
    p.add_argument("--int8-io", action="store_true",
                   help="with int8: int8 input and output tensors (integer-only accelerators)")
    p.add_argument("--allow-tf-ops", action="store_true",
                   help="allow TensorFlow (Flex) ops; the file then needs the Flex delegate")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="compare a .tflite file with its .keras model")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the .keras model the file came from")
    p.add_argument("--tflite", required=True, help="the .tflite file")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("report", help="Markdown and PNG plots from a results JSON")
    p.add_argument("results_file", help="results JSON written by `keras-kd demo`")
    p.add_argument("--output-dir", default=None,
                   help="where report.md and the PNGs go. Default: next to the results file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the whole path on bundled data, in a few minutes",
                       description=DEMO_STEPS)
    p.add_argument("--output-dir", default="runs/demo", help="where models, TFLite files and "
                   "results.json go. Default: runs/demo")
    p.add_argument("--teacher-epochs", type=int, default=40, help="Default: 40")
    p.add_argument("--student-epochs", type=int, default=80, help="Default: 80")
    p.add_argument("--pairs", type=int, default=5,
                   help="scratch/distilled student pairs, one seed each. Default: 5")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--results", default=None,
                   help="also write the results to this JSON file (they are always in "
                        "OUTPUT_DIR/results.json)")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras progress")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    for name in ("epochs", "batch_size", "teacher_epochs", "student_epochs",
                 "calibration_samples", "pairs"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            print(f"keras-kd: error: invalid value for --{name.replace('_', '-')}: expected a "
                  f"positive integer, received {value}", file=sys.stderr)
            return 2
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
