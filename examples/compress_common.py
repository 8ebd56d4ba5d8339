"""What examples/qat_distill.py and examples/prune_distill.py share: arguments, the data,
the teacher (loaded, or trained once and saved), the float distilled student (cached), and a
results file that is rewritten atomically after every row, so an interrupted run resumes
where it stopped (rows already in `--out` with the same budget are not recomputed)."""

import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_kd import atomic, data, models, workflows  # noqa: E402

DEFAULT_DATA = os.path.join("..", "shared", "data", "cifar10")


def parser(description, rows):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with train/ and test/ class folders")
    p.add_argument("--teacher", default="runs/cifar10/teacher.keras",
                   help="saved Keras 3 teacher; trained (--teacher-model, --teacher-epochs) "
                        "and saved there if missing")
    p.add_argument("--teacher-model", default="resnet-teacher", choices=models.names())
    p.add_argument("--teacher-epochs", type=int, default=30)
    p.add_argument("--students", default="mobile-small,cnn-small",
                   help="comma-separated student names (keras_kd.models)")
    p.add_argument("--student-epochs", type=int, default=30,
                   help="epochs of float distillation before compression")
    p.add_argument("--epochs", type=int, default=5, help="epochs of QAT / pruning")
    p.add_argument("--steps-per-epoch", type=int, default=0,
                   help="cap on training batches per epoch (0: the whole training split)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=1e-3, help="float distillation learning rate")
    p.add_argument("--compress-lr", type=float, default=1e-4, help="QAT / pruning learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default=",".join(rows), help=f"rows to run, of {','.join(rows)}")
    p.add_argument("--workdir", default="runs/cifar10/compress",
                   help="where students and .tflite files are kept (reused on a rerun)")
    p.add_argument("--out", required=True, help="results JSON (rewritten after every row)")
    p.add_argument("--verbose", type=int, default=2)
    return p


def check_rows(text, rows):
    chosen = [r for r in text.split(",") if r]
    unknown = [r for r in chosen if r not in rows]
    if unknown:
        raise SystemExit(f"--rows: unknown rows {unknown}; expected some of {list(rows)}")
    return chosen


def history(values):
    return {k: [round(float(v), 6) for v in vs] for k, vs in values.items()}


def budget(args):
    """The settings a row's figures depend on: a row is reused only with the same budget."""
    return {k: getattr(args, k) for k in (
        "teacher", "student_epochs", "epochs", "steps_per_epoch", "batch_size", "alpha",
        "temperature", "lr", "compress_lr", "seed")}


def load_splits(args):
    keras.utils.set_random_seed(args.seed)
    splits = data.load(args.data, batch_size=args.batch_size, seed=args.seed)
    steps = math.ceil(splits.train_size / args.batch_size)
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    # a known length (the pruning schedule and Keras' progress bar need it)
    splits.train = splits.train.take(steps).apply(tf.data.experimental.assert_cardinality(steps))
    return splits


def teacher(args, splits):
    if os.path.exists(args.teacher):
        return keras.saving.load_model(args.teacher), {"teacher_loaded_from": args.teacher}
    model = models.build(args.teacher_model, splits.input_shape, splits.num_classes)
    facts = workflows.train_supervised(model, splits, epochs=args.teacher_epochs,
                                       verbose=args.verbose)
    atomic.save_model(model, args.teacher)
    facts.pop("history")
    return model, {"teacher_trained": facts}


def float_student(args, name, splits, teacher_model):
    """The float distilled student, from the workdir if a previous run made it."""
    path = os.path.join(args.workdir, f"{name}.distilled.keras")
    if os.path.exists(path):
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(args.seed)
    student = models.build(name, splits.input_shape, splits.num_classes)
    workflows.distill(student, teacher_model, splits, epochs=args.student_epochs,
                      alpha=args.alpha, temperature=args.temperature, lr=args.lr,
                      verbose=args.verbose)
    atomic.save_model(student, path)
    return student


class Results:
    """`{"budget": ..., "rows": {key: row}}` in `path`, rewritten atomically after each row."""

    def __init__(self, path, args, extra=None, settings=None):
        self.path, self.budget = path, {**budget(args), **(settings or {})}
        self.doc = {"budget": self.budget, "rows": {}}
        if os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
            if previous.get("budget") == self.budget:
                self.doc = previous
        self.doc.update(extra or {})

    def has(self, key):
        return key in self.doc["rows"]

    def add(self, key, row, started):
        row["seconds"] = round(time.time() - started, 1)
        self.doc["rows"][key] = row
        atomic.write_json(self.path, self.doc)
        print(json.dumps({key: row}), flush=True)

    def table(self, columns):
        rows = [{"name": key, **row} for key, row in self.doc["rows"].items()]
        return workflows.table(rows, columns)



def run(args, rows, columns, compute, settings=None, suffix=""):
    """The shared driver: for each student and each chosen row not yet in `--out`,
    `compute(row, student, teacher, splits, tflite_path)` gives the row's dict. `settings`
    are the example's own settings, part of the budget."""
    chosen = check_rows(args.rows, rows)
    splits = load_splits(args)
    teacher_model, teacher_facts = teacher(args, splits)
    results = Results(args.out, args, {"teacher": teacher_facts, "data": args.data}, settings)
    os.makedirs(args.workdir, exist_ok=True)
    for name in args.students.split(","):
        student = float_student(args, name, splits, teacher_model)
        for row in chosen:
            key = f"{name}/{row}"
            if results.has(key):
                continue
            started = time.time()
            path = os.path.join(args.workdir, f"{name}.{row}{suffix}.tflite")
            results.add(key, compute(row, student, teacher_model, splits, path), started)
    print(results.table(columns))
