"""`keras-kd demo`: teacher, distilled student, scratch twin, TFLite export, one table."""

import os
import time

import keras

from keras_kd import atomic, data, models, workflows

# Both students use the same learning rate; 1e-3 leaves the distilled 2x20 under-fitted
# on digits within 80 epochs (measured: hard loss 0.16 vs 0.09 at 3e-3).
STUDENT_LR = 3e-3
# A 20-unit net needs more weight on the labels than Hinton's alpha = 0.1: on MNIST's
# validation split alpha 0.3 beat 0.1 (README). On digits, five pairs: alpha 0.3 gains
# +0.58 points (5 of 5), alpha 0.1 +0.13 (3 of 5).
STUDENT_ALPHA, STUDENT_TEMPERATURE = 0.3, 4.0


def run(output_dir="runs/demo", teacher_epochs=40, student_epochs=80, seed=0, verbose=2, pairs=5):
    """Runs the demo on scikit-learn's bundled digits; returns the results dict.

    The test split has 449 images (one image = 0.22 accuracy points), so one scratch/distilled
    pair cannot tell noise from gain: `pairs` pairs are trained, each from its own seed.
    """
    start = time.time()
    splits = data.load("digits", batch_size=64, seed=seed)
    print(f"data: {splits.name}, {splits.train_size} train / {splits.test_size} test images "
          f"{splits.input_shape}, {splits.num_classes} classes\n")
    rows = {}

    print(f"[1/4] teacher 2x1200 with dropout, {teacher_epochs} epochs")
    keras.utils.set_random_seed(seed)
    teacher = models.build("mlp-teacher", splits.input_shape, splits.num_classes)
    rows["teacher"] = workflows.train_supervised(teacher, splits, epochs=teacher_epochs,
                                                 verbose=verbose)

    print(f"\n[2/4] {pairs} pairs of 2x20 students, {student_epochs} epochs each: from scratch, "
          "and distilled from the same initial weights")
    pair_results = []
    for i in range(pairs):
        keras.utils.set_random_seed(seed + 1 + i)
        scratch_i = models.build("mlp-tiny", splits.input_shape, splits.num_classes)
        initial = scratch_i.get_weights()
        scratch_facts = workflows.train_supervised(
            scratch_i, splits, epochs=student_epochs, lr=STUDENT_LR, verbose=verbose if i == 0 else 0
        )
        student_i = models.build("mlp-tiny", splits.input_shape, splits.num_classes)
        student_i.set_weights(initial)
        distilled_facts, _ = workflows.distill(
            student_i, teacher, splits, epochs=student_epochs, alpha=STUDENT_ALPHA,
            temperature=STUDENT_TEMPERATURE, lr=STUDENT_LR, verbose=verbose if i == 0 else 0,
        )
        pair_results.append({"seed": seed + 1 + i, "scratch": scratch_facts["test_accuracy"],
                             "distilled": distilled_facts["test_accuracy"]})
        print(f"  pair {i + 1}: scratch {scratch_facts['test_accuracy']:.4f}, distilled "
              f"{distilled_facts['test_accuracy']:.4f}")
        if i == 0:  # the first pair is the one saved, exported and reported in full
            scratch, student = scratch_i, student_i
            rows["student_scratch"], rows["student_distilled"] = scratch_facts, distilled_facts

    print("\n[3/4] saving the teacher and the first pair")
    for key, model in (("teacher", teacher), ("student_scratch", scratch),
                       ("student_distilled", student)):
        path = atomic.save_model(model, os.path.join(output_dir, f"{key}.keras"))
        rows[key]["keras_file_bytes"] = os.path.getsize(path)

    print("\n[4/4] TFLite export: distilled student (float32, int8); teacher and scratch (float32)")
    exported = _export(student, splits, output_dir)
    float32 = {"student_distilled": exported["float32"]}
    for key, model in (("teacher", teacher), ("student_scratch", scratch)):
        float32[key] = _export(model, splits, output_dir, modes=("float32",), stem=key)["float32"]
    gains = [p["distilled"] - p["scratch"] for p in pair_results]
    results = {"data": splits.name, "models": rows, "tflite": exported, "tflite_float32": float32,
               "pairs": pair_results, "mean_gain_points": 100 * sum(gains) / len(gains),
               "distilled_wins": sum(g > 0 for g in gains)}

    columns = [("name", "model", ""), ("params", "params", ","),
               ("test_accuracy", "test acc", ".4f"), ("keras_file_bytes", ".keras bytes", ",")]
    table_rows = [{**r, "name": k} for k, r in rows.items()]
    print("\n" + workflows.table(table_rows, columns))
    if exported:
        print("\n" + workflows.table(
            [{**r, "name": f"student {mode}"} for mode, r in exported.items()],
            workflows.EXPORT_COLUMNS,
        ))
    from keras_kd import report

    results["total_seconds"] = round(time.time() - start, 1)
    report_path = atomic.write_json(os.path.join(output_dir, "results.json"), results)
    try:
        print(f"\nreport: {report.write(report_path)}")
    except ImportError as e:
        print(f"\n(no plots: {e})")
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
        export.to_tflite(model, path, quantization=mode, representative_data=splits.train,
                         splits=splits)
        results[mode] = export.verify(model, path, splits.test)
        print(f"  {path}: {results[mode]['size_bytes']:,} bytes, "
              f"agreement {results[mode]['top1_agreement']:.4f}")
    return results
