"""`keras-kd demo`: teacher, distilled student, scratch twin, TFLite export, one table."""

import os
import time

import keras

from keras_kd import atomic, dark_knowledge, data, models, workflows

# Both students use the same learning rate, and the distilled 2x20 takes more weight on the
# labels than Hinton's alpha = 0.1: the settings were chosen on MNIST's validation split and
# on digits (docs/results.md has the figures).
STUDENT_LR = 3e-3
STUDENT_ALPHA, STUDENT_TEMPERATURE = 0.3, 4.0
# The demo's fixed settings, recorded in results.json with the command's options.
SETTINGS = {"data": "digits", "batch_size": 64, "validation_split": 0.1,
            "teacher": "mlp-teacher", "teacher_lr": 1e-3, "student": "mlp-tiny",
            "student_lr": STUDENT_LR, "alpha": STUDENT_ALPHA, "temperature": STUDENT_TEMPERATURE,
            "loss": "kl_divergence", "precision_policy": "float32", "strategy": "default"}


def _trained(label, facts, verbose):
    """One line per trained model (verbose 1), none at 0; at 2 Keras printed every epoch."""
    if verbose == 1:
        print(f"  {label:<34} {facts['epochs_run']:>3} epochs {facts['train_seconds']:>6.1f} s"
              f"   test accuracy {facts['test_accuracy']:.4f}")
    return facts


def run(output_dir="runs/demo", teacher_epochs=40, student_epochs=80, seed=0, verbose=1, pairs=5,
        record=None, overwrite=True):
    """Runs the demo on scikit-learn's bundled digits; returns the results dict.

    The test split has 449 images (one image = 0.22 accuracy points), so one scratch/distilled
    pair cannot tell noise from gain: `pairs` pairs are trained, each from its own seed.
    Validation metrics come from 10 % of the training images; the test set is scored once per
    model, at the end of its training. `record` (the run's configuration and versions) is
    stored in results.json.
    """
    start = time.time()
    fit_verbose = 2 if verbose == 2 else 0
    splits = data.load("digits", batch_size=SETTINGS["batch_size"], seed=seed,
                       validation_split=SETTINGS["validation_split"])
    print(f"data: {splits.name}, {splits.train_size} train / {splits.validation_size} validation "
          f"/ {splits.test_size} test images {splits.input_shape}, {splits.num_classes} classes")
    rows = {}

    print(f"[1/4] teacher 2x1200 with dropout, {teacher_epochs} epochs")
    keras.utils.set_random_seed(seed)
    teacher = models.build("mlp-teacher", splits.input_shape, splits.num_classes)
    teacher_facts, teacher_predictions = workflows.train_supervised(
        teacher, splits, epochs=teacher_epochs, verbose=fit_verbose, seed=seed,
        return_test_predictions=True)
    rows["teacher"] = _trained("teacher 2x1200", teacher_facts, verbose)

    print(f"[2/4] {pairs} pairs of 2x20 students, {student_epochs} epochs each: from scratch, "
          "and distilled from the same initial weights")
    pair_results = []
    for i in range(pairs):
        pair_seed = seed + 1 + i
        keras.utils.set_random_seed(pair_seed)
        scratch_i = models.build("mlp-tiny", splits.input_shape, splits.num_classes)
        initial = scratch_i.get_weights()
        scratch_facts = _trained(f"pair {i + 1}: student 2x20, scratch", workflows.train_supervised(
            scratch_i, splits, epochs=student_epochs, lr=STUDENT_LR, verbose=fit_verbose,
            seed=pair_seed), verbose)
        student_i = models.build("mlp-tiny", splits.input_shape, splits.num_classes)
        student_i.set_weights(initial)
        distilled_facts, _, distilled_predictions = workflows.distill(
            student_i, teacher, splits, epochs=student_epochs, alpha=STUDENT_ALPHA,
            temperature=STUDENT_TEMPERATURE, lr=STUDENT_LR, verbose=fit_verbose, seed=pair_seed,
            return_test_predictions=True,
        )
        _trained(f"pair {i + 1}: student 2x20, distilled", distilled_facts, verbose)
        pair_results.append({"seed": pair_seed, "scratch": scratch_facts["test_accuracy"],
                             "distilled": distilled_facts["test_accuracy"]})
        if i == 0:  # the first pair is the one saved, exported and reported in full
            scratch, student, student_predictions = scratch_i, student_i, distilled_predictions
            rows["student_scratch"], rows["student_distilled"] = scratch_facts, distilled_facts

    print("[3/4] saving the teacher and the first pair")
    for key, model in (("teacher", teacher), ("student_scratch", scratch),
                       ("student_distilled", student)):
        path = atomic.save_model(model, os.path.join(output_dir, f"{key}.keras"))
        rows[key]["keras_file_bytes"] = os.path.getsize(path)

    print("[4/4] TFLite export: distilled student (float32, int8); teacher and scratch (float32)")
    exported = _export(student, splits, output_dir)
    float32 = {"student_distilled": exported["float32"]}
    for key, model in (("teacher", teacher), ("student_scratch", scratch)):
        float32[key] = _export(model, splits, output_dir, modes=("float32",), stem=key)["float32"]
    gains = [p["distilled"] - p["scratch"] for p in pair_results]
    results = {**(record or {}), "data": splits.name, "models": rows, "tflite": exported,
               "tflite_float32": float32, "pairs": pair_results, "mean_gain_points": 100 * sum(gains) / len(gains),
               "distilled_wins": sum(g > 0 for g in gains),
               "dark_knowledge": dark_knowledge.from_predictions(  # the first pair's student
                   teacher_predictions, student_predictions, splits.class_names,
                   STUDENT_TEMPERATURE)}

    from keras_kd import report

    results["total_seconds"] = round(time.time() - start, 1)
    report_path = atomic.write_json(os.path.join(output_dir, "results.json"), results,
                                    overwrite=overwrite)
    try:
        report.write(report_path)
        written = "results.json, report.md (with plots)"
    except ImportError as e:
        written = f"results.json (no plots: {e})"
    print(f"\ndemo finished in {results['total_seconds']:.0f} s; models, TFLite files, {written} "
          f"in {output_dir}")

    columns = [("name", "model", ""), ("params", "params", ","),
               ("test_accuracy", "test acc", ".4f"), ("keras_file_bytes", ".keras bytes", ",")]
    print("\n" + workflows.table([{**r, "name": k} for k, r in rows.items()], columns))
    print("\n" + workflows.table(
        [{**r, "name": f"student {mode}"} for mode, r in exported.items()],
        workflows.EXPORT_COLUMNS,
    ))
    print(f"\ndistillation gain over the scratch twin, {pairs} pairs (test set: {splits.test_size} "
          f"images, 1 image = {100 / splits.test_size:.2f} points): mean "
          f"{results['mean_gain_points']:+.2f} points, distilled better in "
          f"{results['distilled_wins']} of {pairs} pairs "
          f"({', '.join(f'{100 * g:+.2f}' for g in gains)})")
    return results


def _export(model, splits, output_dir, modes=("float32", "int8"), stem="student"):
    """TFLite files of `model`, each verified against it."""
    from keras_kd import export

    results = {}
    for mode in modes:
        path = os.path.join(output_dir, f"{stem}_{mode}.tflite")
        _, results[mode] = export.to_tflite_and_verify(model, path, splits, quantization=mode)
        print(f"  {path}: {results[mode]['size_bytes']:,} bytes, "
              f"agreement {results[mode]['top1_agreement']:.4f}")
    return results
