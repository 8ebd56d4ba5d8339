"""`keras-kd`: train a teacher, distil a student, evaluate, export and verify, run the demo.

Every option is validated before any data or model loads (a bad value exits with status 2
in a fraction of a second, naming the option); TensorFlow's native log lines are kept out
of the output unless `--verbose 2`; every results JSON holds the run's full configuration and
the versions used, and `keras-kd rerun RESULTS.json` repeats the run from it.
Run `keras-kd COMMAND --help` for the options of a command.
"""

import argparse
import math
import os
import sys

from keras_kd import __version__

DEMO_STEPS = """The demo: on scikit-learn's bundled 8x8 digits (no download) it trains a 2x1200
teacher, then pairs of 2x20 students (from scratch, and distilled from the same initial
weights; one seed per pair), exports the first distilled student to TFLite (float32 and int8)
and the teacher and scratch student (float32), verifies every file against its Keras model and
prints a table and a report (report.md, PNG plots)."""

# Known here without importing TensorFlow, so that a bad value fails at once; tests check
# that each equals the list of the module that owns it.
MODEL_NAMES = ("cnn-small", "cnn-student", "cnn-teacher", "mlp-student", "mlp-teacher", "mlp-tiny",
               "mobile-small", "resnet-teacher", "resnet8-teacher")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "qat")
PRECISIONS = ("off", "auto", "mixed_float16", "mixed_bfloat16")
# Distillation losses, and whether each has a temperature.
LOSSES = {"kl_divergence": True, "soft_target_crossentropy": True, "logits_mse": False}
DEFAULT_TEMPERATURE = 4.0


# ---------------------------------------------------------------- argparse value types
# Each raises ArgumentTypeError; argparse then prints "argument --NAME: MESSAGE", exit 2.
def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, received {text!r}"
        ) from None


def positive_int(text):
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, received {text!r}")
    return value


def non_negative_int(text):
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, received {text!r}")
    return value


def positive_float(text):
    value = _number(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, received {text!r}")
    return value


def non_negative_float(text):
    value = _number(text, float)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, received {text!r}")
    return value


def unit_float(text):
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], received {text!r}")
    return value


def split_fraction(text):
    value = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in [0, 1) of the training data, received {text!r}"
        )
    return value


def existing_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def keras_file(text):
    existing_file(text)
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(f"expected a .keras file, received {text!r}")
    return text


def model_spec(text):
    """A reference model name or an existing `.keras` file."""
    if text in MODEL_NAMES:
        return text
    if text.endswith(".keras") or os.sep in text:
        return keras_file(text)
    raise argparse.ArgumentTypeError(
        f"expected one of {list(MODEL_NAMES)} or a .keras file, received {text!r}"
    )


def data_spec(text):
    """'digits', an existing .npz file or directory, or a TFDS name (checked when loaded)."""
    looks_like_path = text.endswith(".npz") or os.sep in text or text.startswith(".")
    if looks_like_path and not os.path.exists(text):
        raise argparse.ArgumentTypeError(
            f"no such file or directory: {text!r} (expected 'digits', an .npz in the "
            "keras.datasets layout, or a TFDS name such as 'mnist')"
        )
    return text


# ---------------------------------------------------------------- the parser
def _add_common_args(p, data_default="digits"):
    p.add_argument("--data", type=data_spec, default=data_default,
                   help="dataset: 'digits' (bundled with scikit-learn, no download), a folder of "
                        "class folders of images (train/ and test/, e.g. ../shared/data/cifar10), "
                        "a .npz in the keras.datasets layout (e.g. mnist.npz), or a TFDS name "
                        "such as 'mnist' "
                        f"(downloads on first use). Default: {data_default}")
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="global batch size (split across replicas under a strategy). Default: 128")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed for weights, data split and shuffling. Default: 0")
    p.add_argument("--results", default=None, help="write the results to this JSON file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (refused otherwise)")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="0: results only, 1: a Keras progress bar per epoch, 2: one line per "
                        "epoch and TensorFlow's native log lines. Default: 1")


def _add_train_args(p, epochs):
    p.add_argument("--epochs", type=positive_int, default=epochs,
                   help=f"training epochs. Default: {epochs}")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="Adam learning rate (cosine-decayed to 1%% over the run). Default: 1e-3")
    p.add_argument("--validation-split", type=split_fraction, default=0.1,
                   help="fraction of the training data held out (seeded) for the validation "
                        "metrics; the test set is scored once, at the end. 0: no validation. "
                        "Default: 0.1")
    p.add_argument("--mixed-precision", default="off", choices=PRECISIONS,
                   help="compute dtype of the trained model: auto = mixed_float16 on GPUs, "
                        "mixed_bfloat16 on CPUs with bf16 instructions. Default: off (float32)")
    p.add_argument("--backup-dir", default=None,
                   help="back up the training state here after every epoch; re-running the same "
                        "command after a crash resumes from the last completed epoch")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-kd", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keras-kd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> subparser (keras_kd.runconfig rebuilds argv from it)
    from keras_kd import cli_methods
    from keras_kd import commands

    p = sub.add_parser("train-teacher", help="train a teacher on the labels")
    _add_common_args(p)
    _add_train_args(p, epochs=20)
    p.add_argument("--model", type=model_spec, default="mlp-teacher",
                   help=f"reference model ({', '.join(MODEL_NAMES)}) or a .keras file. "
                        "Default: mlp-teacher (2x1200, dropout)")
    p.add_argument("--output", default="teacher.keras", help="where to save the trained teacher")
    p.set_defaults(func=commands.train_teacher)

    p = sub.add_parser("distill", help="distil a teacher into a student")
    _add_common_args(p)
    _add_train_args(p, epochs=20)
    p.add_argument("--teacher", type=keras_file, required=True,
                   help="trained teacher (.keras, outputs logits)")
    p.add_argument("--student", type=model_spec, default="mlp-student",
                   help="reference model (mlp-student 2x800, mlp-tiny 2x20, cnn-student) or a "
                        ".keras file. Default: mlp-student")
    p.add_argument("--alpha", type=unit_float, default=None,
                   help="weight in [0, 1] of the hard-label loss; 1-alpha weighs the kd term "
                        "(--hint, --attention and dkd terms carry their own weights). Default: "
                        "0.1, 1.0 with --method dkd")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help=f"softening temperature T > 0 (losses with a temperature only). "
                        f"Default: {DEFAULT_TEMPERATURE:g}")
    p.add_argument("--loss", default=None, choices=tuple(LOSSES),
                   help="distillation loss of --method kd. Default: kl_divergence (times T^2)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute strategy. Default: auto (TPU if found, multi-worker if "
                        "TF_CONFIG names several workers, mirrored if several GPUs, else default)")
    cli_methods.add_arguments(p)
    p.add_argument("--output", default="student.keras",
                   help="where to save the student (.keras; with --qat its QAT model)")
    p.set_defaults(func=commands.distill)

    p = sub.add_parser("evaluate", help="test accuracy and size of a saved model")
    _add_common_args(p, data_default=None)
    p.add_argument("--model", type=keras_file, required=True,
                   help="a .keras model outputting logits, or a saved Distiller (its student)")
    p.set_defaults(func=commands.evaluate)

    p = sub.add_parser("export", help="export a .keras model to TFLite and verify the file")
    _add_common_args(p, data_default=None)
    p.add_argument("--model", type=keras_file, required=True,
                   help="the trained .keras model (outputs logits), or a saved Distiller: its "
                        "student is exported")
    p.add_argument("--output", required=True, help="the .tflite file to write (sidecars beside it)")
    p.add_argument("--quantization", default="float32", choices=QUANTIZATIONS,
                   help="float32 (exact), float16 (half-size weights), dynamic (int8 weights), "
                        "int8 (full integer, calibrated on --data's training split), qat (a "
                        "model from `keras-kd distill --qat`: full integer with the ranges it "
                        "trained; --data's training split calibrates only the preprocessing). "
                        "Default: float32")
    p.add_argument("--calibration-samples", type=positive_int, default=500,
                   help="representative samples for int8 calibration. Default: 500")
    p.add_argument("--int8-io", action="store_true",
                   help="with int8 or qat: int8 input and output tensors (integer-only "
                        "accelerators)")
    p.add_argument("--allow-tf-ops", action="store_true",
                   help="allow TensorFlow (Flex) ops; the file then needs the Flex delegate")
    p.set_defaults(func=commands.export)

    p = sub.add_parser("verify", help="compare a .tflite file with its .keras model")
    _add_common_args(p, data_default=None)
    p.add_argument("--model", type=keras_file, required=True,
                   help="the .keras model the file came from (or its saved Distiller)")
    p.add_argument("--tflite", type=existing_file, required=True, help="the .tflite file")
    p.set_defaults(func=commands.verify)

    p = sub.add_parser("report", help="Markdown and PNG plots from a results JSON")
    p.add_argument("results_file", type=existing_file,
                   help="results JSON written by `keras-kd demo`")
    p.add_argument("--output-dir", default=None,
                   help="where report.md and the PNGs go. Default: next to the results file")
    p.set_defaults(func=commands.report)

    p = sub.add_parser("demo", help="the whole path on bundled data, in a few minutes",
                       description=DEMO_STEPS)
    p.add_argument("--output-dir", default="runs/demo", help="where models, TFLite files and "
                   "results.json go. Default: runs/demo")
    p.add_argument("--teacher-epochs", type=positive_int, default=40, help="Default: 40")
    p.add_argument("--student-epochs", type=positive_int, default=80, help="Default: 80")
    p.add_argument("--pairs", type=positive_int, default=5,
                   help="scratch/distilled student pairs, one seed each. Default: 5")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed. Default: 0")
    p.add_argument("--results", default=None,
                   help="also write the results to this JSON file (they are always in "
                        "OUTPUT_DIR/results.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier demo in OUTPUT_DIR (refused otherwise)")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="0: the tables only, 1: one line per trained model, 2: one line per "
                        "epoch and TensorFlow's native log lines. Default: 1")
    p.set_defaults(func=commands.demo)

    p = sub.add_parser("rerun", help="repeat a run from the configuration in its results JSON")
    p.add_argument("config", type=existing_file,
                   help="a results JSON written by keras-kd (train-teacher, distill, evaluate, "
                        "export, verify or demo)")
    p.add_argument("--output", default=None, help="save the model or file here instead")
    p.add_argument("--output-dir", default=None, help="demo: write its files here instead")
    p.add_argument("--results", default=None, help="write the new results JSON here instead")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=None)
    return parser


def _check_outputs(parser, args):
    """Refuses, before any work, to replace files without --overwrite or to write where
    the user cannot."""
    outputs = [(f"--{name}", getattr(args, name, None)) for name in ("output", "results")]
    if args.command == "demo":
        outputs.append(("--output-dir", os.path.join(args.output_dir, "results.json")))
    for option, path in outputs:
        if not path:
            continue
        if os.path.exists(path) and not getattr(args, "overwrite", True):
            parser.error(f"argument {option}: {path!r} exists; pass --overwrite to replace it")
        parent = _existing_parent(os.path.dirname(os.path.abspath(path)))
        if not os.access(parent, os.W_OK):
            parser.error(f"argument {option}: cannot write {path!r} ({parent!r} is not writable)")


def _existing_parent(directory):
    while not os.path.exists(directory):
        directory = os.path.dirname(directory)
    return directory


def _check_combinations(parser, args):
    if args.command == "distill":
        if args.temperature is not None and not LOSSES.get(args.loss, True):
            parser.error(f"argument --temperature: --loss {args.loss} has no temperature; "
                         f"received --temperature {args.temperature:g}")
        from keras_kd import cli_methods

        cli_methods.check(parser, args)
    if args.command == "export" and args.int8_io and args.quantization not in ("int8", "qat"):
        parser.error(f"argument --int8-io: needs --quantization int8 or qat, received "
                     f"--quantization {args.quantization}")
    for option in ("output", "results"):
        for source in ("teacher", "model"):
            path, other = getattr(args, option, None), getattr(args, source, None)
            if path and other and os.path.realpath(path) == os.path.realpath(other):
                parser.error(f"argument --{option}: would overwrite --{source} {path!r}")


def parse_args(argv=None):
    """Parses and validates `argv`; `rerun` becomes the command its JSON recorded."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "rerun":
        from keras_kd import runconfig

        try:
            argv = runconfig.argv_from_results(args.config, parser, output=args.output,
                                               output_dir=args.output_dir,
                                               results=args.results, overwrite=args.overwrite)
        except ValueError as e:
            parser.error(f"argument config: {e}")
        args = parser.parse_args(argv)
    command_parser = parser.commands[args.command]  # its errors show its own usage line
    _check_combinations(command_parser, args)
    _check_outputs(command_parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    args.verbose = getattr(args, "verbose", 1)
    if args.verbose < 2:
        from keras_kd import quiet

        quiet.enable()
    import keras_kd

    keras_kd.import_all()  # registers keras_kd's Keras classes before any model loads
    from keras_kd.commands import CommandError

    try:
        args.func(args)
    except (CommandError, ValueError, FileExistsError) as e:  # the user's to fix: one line
        if args.verbose == 2:
            raise
        from keras_kd import quiet

        quiet.mark_failed()
        print(f"keras-kd {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
