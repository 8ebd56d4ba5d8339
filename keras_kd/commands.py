"""What each `keras-kd` command does, once `keras_kd.cli` has validated its arguments.

Nothing here runs at import: TensorFlow loads inside the functions, after the CLI has
quieted its native logs. Errors the user can fix (a file that is not a model, data of the
wrong shape, a dataset that cannot be read) become `CommandError`: one line, no traceback.
"""

import os


class CommandError(Exception):
    """A failure the CLI reports as one line (no traceback), with exit status 1."""


def _start(args):
    """Seeds every generator (CPU runs are then bit-identical) and sets the dtype policy;
    returns the name of the policy in force."""
    import keras

    from keras_kd import precision

    keras.utils.set_random_seed(args.seed)
    return precision.enable(getattr(args, "mixed_precision", "off"))


def _fit_verbose(args):
    return {0: 0, 1: "auto", 2: 2}[args.verbose]


def load_model(path, option):
    """A `.keras` model; for a saved `Distiller`, its student."""
    import keras

    try:
        model = keras.saving.load_model(path)
    except Exception as e:  # Keras raises ValueError, OSError, TypeError... for a bad file
        raise CommandError(f"argument {option}: cannot load {path!r} as a Keras model "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return getattr(model, "student", model)


def _input_shape(model):
    shape = model.input_shape
    return tuple(shape[1:]) if isinstance(shape, tuple) else None


def _data_for(model, args):
    """`--data`, or when it is not given, the bundled digits if the model takes 8x8 images."""
    if args.data is not None:
        return args.data
    if _input_shape(model) == (8, 8, 1):
        return "digits"
    raise CommandError(f"argument --data: required for a model whose input shape is "
                       f"{_input_shape(model)} (the default, 'digits', is (8, 8, 1)); pass data "
                       "of that shape, e.g. --data path/to/mnist.npz for (28, 28, 1)")


def load_data(args, source=None, validation_split=0.0):
    """`data.load` with the CLI's arguments; load errors become one-line CommandErrors."""
    from keras_kd import data

    source = source or args.data
    try:
        return data.load(source, batch_size=args.batch_size, seed=args.seed,
                         validation_split=validation_split)
    except (ValueError, OSError, ImportError, data.DatasetUnavailableError) as e:
        raise CommandError(f"argument --data: {e}") from None


def check_input_shape(model, splits, option):
    expected = _input_shape(model)
    if expected is not None and None not in expected and expected != tuple(splits.input_shape):
        raise CommandError(f"argument {option}: the model takes inputs of shape {expected}, "
                           f"but --data {splits.name!r} has {tuple(splits.input_shape)}")


def _build_or_load(spec, splits, option):
    from keras_kd import models

    if spec.endswith(".keras"):
        model = load_model(spec, option)
        check_input_shape(model, splits, option)
        return model
    return models.build(spec, splits.input_shape, splits.num_classes)


def _finish(args, results, **settings):
    """Adds the run configuration and versions to `results` and writes `--results`."""
    from keras_kd import atomic, runconfig

    results.update(runconfig.record(args, **settings))
    if args.results:
        path = atomic.write_json(args.results, results, overwrite=args.overwrite)
        print(f"results written to {path}")
    return results


def train_teacher(args):
    from keras_kd import atomic, workflows

    policy = _start(args)
    splits = load_data(args, validation_split=args.validation_split)
    teacher = _build_or_load(args.model, splits, "--model")
    results = workflows.train_supervised(
        teacher, splits, epochs=args.epochs, lr=args.lr, verbose=_fit_verbose(args),
        seed=args.seed, backup_dir=args.backup_dir,
    )
    atomic.save_model(teacher, args.output, overwrite=args.overwrite)
    results.update(command="train-teacher", data=splits.name, output=args.output)
    print(f"teacher: {results['epochs_run']} epochs in {results['train_seconds']:.1f} s, test "
          f"accuracy {results['test_accuracy']:.4f}, saved to {args.output}")
    return _finish(args, results, precision_policy=policy)


def distill(args):
    from keras_kd import atomic, cli, cli_methods, cli_terms, dark_knowledge, distribute, workflows

    policy = _start(args)
    settings = cli_methods.resolved(args, default_loss="kl_divergence")
    has_temperature = cli.LOSSES.get(settings.get("loss"), True)  # DKD has one
    temperature = (args.temperature or cli.DEFAULT_TEMPERATURE) if has_temperature else None
    strategy = distribute.get_strategy(args.strategy)
    splits = load_data(args, validation_split=args.validation_split)
    common = dict(epochs=args.epochs, alpha=settings["alpha"], temperature=temperature,
                  lr=args.lr, verbose=_fit_verbose(args))
    with strategy.scope():
        teacher = load_model(args.teacher, "--teacher")
        check_input_shape(teacher, splits, "--teacher")
        student = _build_or_load(args.student, splits, "--student")
        terms = cli_terms.build(args, teacher, student, settings, temperature)
        if args.prune is not None:
            results, student, predictions = workflows.prune_distill(
                student, teacher, splits, target_sparsity=args.prune,
                return_test_predictions=True, **common)
        else:
            student = _qat_model(student) if args.qat else student
            results, distiller, predictions = workflows.distill(
                student, teacher, splits, terms=terms, distillation_loss_fn=settings.get("loss"),
                seed=args.seed, backup_dir=args.backup_dir, return_test_predictions=True,
                **common)
            results["terms"] = cli_terms.describe(distiller.objective.terms)
    # The teacher's view at the distillation temperature (at T = 1 for a loss without one),
    # from the student's test predictions the workflow scored it with.
    results["dark_knowledge"] = dark_knowledge.from_predictions(
        workflows.predict_labelled(teacher, splits.test), predictions, splits.class_names,
        temperature or 1.0)
    atomic.save_model(student, args.output, overwrite=args.overwrite)
    results.update(command="distill", data=splits.name, teacher=args.teacher, output=args.output,
                   replicas=strategy.num_replicas_in_sync, global_batch_size=args.batch_size,
                   per_replica_batch_size=args.batch_size // strategy.num_replicas_in_sync)
    print(f"distilled student: {results['epochs_run']} epochs in {results['train_seconds']:.1f} s, "
          f"test accuracy {results['test_accuracy']:.4f}, saved to {args.output}")
    return _finish(args, results, precision_policy=policy, temperature=temperature,
                   strategy_class=type(strategy).__name__, **settings)


def _qat_model(student):
    """`--qat`: the student rebuilt with fake quantization (`keras_kd.optimize.native`)."""
    from keras_kd.optimize import native

    try:
        return native.quantize_model(student)
    except ValueError as e:
        raise CommandError(f"argument --qat: {e}") from None


def evaluate(args):
    from keras_kd import workflows

    model = load_model(args.model, "--model")
    splits = load_data(args, _data_for(model, args))
    check_input_shape(model, splits, "--model")
    results = {"command": "evaluate", "model": args.model, "data": splits.name,
               **workflows.model_facts(model), "test_accuracy": workflows.accuracy(model, splits),
               "file_bytes": os.path.getsize(args.model)}
    print(f"{args.model}: test accuracy {results['test_accuracy']:.4f}, "
          f"{results['params']:,} parameters")
    return _finish(args, results)


def export(args):
    from keras_kd import export as export_lib

    model = load_model(args.model, "--model")
    splits = load_data(args, _data_for(model, args))
    check_input_shape(model, splits, "--model")
    metadata, report = export_lib.to_tflite_and_verify(
        model, args.output, splits, quantization=_quantization(model, args),
        max_calibration_samples=args.calibration_samples, int8_io=args.int8_io,
        allow_tf_ops=args.allow_tf_ops,
    )
    _print_report(report)
    return _finish(args, {"command": "export", "model": args.model, "data": splits.name,
                          "metadata": metadata, "verify": report})


def _quantization(model, args):
    """The `to_tflite` quantization of `--quantization`. `qat`, the export of a `distill --qat`
    model, is full int8 with representative data: the converter keeps the trained ranges and
    calibrates only the preprocessing's (`keras_kd.optimize.native.to_tflite`); a model
    without fake-quantization layers is refused."""
    from keras_kd import export as export_lib

    if args.quantization != "qat":
        return args.quantization
    if not export_lib.quantization_aware(model):
        raise CommandError(f"argument --quantization: qat exports a model trained with "
                           f"`keras-kd distill --qat` (it has fake-quantization layers); "
                           f"--model {args.model!r} has none: use --quantization int8 for "
                           "post-training quantization")
    return "int8"


def verify(args):
    from keras_kd import export as export_lib

    model = load_model(args.model, "--model")
    splits = load_data(args, _data_for(model, args))
    check_input_shape(model, splits, "--model")
    try:
        report = export_lib.verify(model, args.tflite, splits.test)
    except ValueError as e:
        raise CommandError(f"argument --tflite: {e}") from None
    _print_report(report)
    return _finish(args, {"command": "verify", "model": args.model, "data": splits.name,
                          "verify": report})


def _print_report(report):
    from keras_kd import workflows

    row = {**report, "name": os.path.basename(report["file"])}
    print(workflows.table([row], workflows.EXPORT_COLUMNS))
    if report["flex_ops"]:
        print(f"WARNING: the file needs the Flex delegate for {report['flex_ops']}")


def demo(args):
    from keras_kd import demo as demo_lib
    from keras_kd import runconfig

    results = demo_lib.run(output_dir=args.output_dir, teacher_epochs=args.teacher_epochs,
                           student_epochs=args.student_epochs, seed=args.seed,
                           verbose=args.verbose, pairs=args.pairs, overwrite=args.overwrite,
                           record=runconfig.record(args, **demo_lib.SETTINGS))
    if args.results:  # an extra copy where asked
        _finish(args, results)
    return results


def report(args):
    from keras_kd import report as report_lib

    try:
        path = report_lib.write(args.results_file, args.output_dir)
    except (ValueError, ImportError) as e:
        raise CommandError(f"argument results_file: {e}") from None
    print(f"report written to {path} (with its PNG plots)")
    return path
