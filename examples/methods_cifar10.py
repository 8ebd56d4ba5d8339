"""Distillation methods compared on CIFAR-10: one (method, student, seed) per call, one JSON row.

    python examples/methods_cifar10.py --teacher runs/cifar10/teacher.keras \
        --data ../shared/data/cifar10 --method hints+kd --student cnn-small --seed 0 \
        --epochs 30 --output runs/cifar10/methods

    python examples/methods_cifar10.py --summarize --output runs/cifar10/methods   # Markdown

Methods (every one with the same teacher, data order, augmentation, optimizer and budget):

| method        | objective                                                              |
|---------------|------------------------------------------------------------------------|
| `scratch`     | the student on the labels alone (alpha = 1, no teacher term)           |
| `kd`          | 0.1 * CE + 0.9 * T^2 KL at T = 4 (Hinton et al. 2015)                  |
| `dkd`         | CE + warm-up * DKD(alpha=1, beta=8, T=4) (Zhao et al. 2022)            |
| `hints+kd`    | kd + FitNets hint (MSE, adapter) on the teacher's `stage2_out`         |
| `at+kd`       | kd + 500 * attention transfer on the three stage outputs               |
| `ensemble`    | kd from the weighted mean of the `--teachers`' probabilities           |
| `teacher-init`| kd from a student whose matching layers start as the teacher's         |
| `search`      | T and alpha chosen on the validation split (early stopping), then kd   |

Per seed `s`: `keras.utils.set_random_seed(s)` (student initialisation and the data order),
augmentation seed `s`; the validation carving is the teacher's (data seed 0). The validation
split is monitored each epoch; the test split is scored once, at the end. Rows are written
atomically to OUTPUT/METHOD-STUDENT-seedS.json; a row that exists is skipped (resume).
`--limit N` trains on a fixed random sample of N training examples (data seed 0, the same
for every method and seed) and scores N validation/test examples (all of them when N is at
least the split's size: `--limit 10240` scores the full 5,000 and 10,000).
"""

import argparse
import glob
import json
import os
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import seed_table  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_kd import Distiller, TeacherEnsemble, atomic, data, models, search, terms  # noqa: E402
from keras_kd import ensemble as ensemble_lib  # noqa: E402
from keras_kd import transfer, workflows  # noqa: E402

METHODS = ("scratch", "kd", "dkd", "hints+kd", "at+kd", "ensemble", "teacher-init", "search")
STAGES = ("stage1_out", "stage2_out", "stage3_out")
# ResNet stem -> cnn-small's first stage, for teacher-init (names that match copy by themselves).
INIT_MAPPING = {"cnn_small": {"stage1_conv": "stem_conv", "stage1_bn": "stem_bn"}}


def augmentation():
    return [keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect"),
            keras.layers.RandomFlip("horizontal")]


def same_size_stage(student, teacher_layer, teacher):
    """The student stage whose output has the teacher layer's height and width."""
    size = teacher.get_layer(teacher_layer).output.shape[1:3]
    for name in STAGES:
        if student.get_layer(name).output.shape[1:3] == size:
            return name
    return teacher_layer


def method_setup(args, student, teacher):
    """`(teacher, terms, compile arguments, facts)` of a method."""
    kd = {"alpha": args.alpha, "temperature": args.temperature}
    if args.method == "scratch":
        return teacher, [terms.Logits(weight=0.0)], {"alpha": 1.0}, {}
    if args.method == "dkd":
        warmup = max(1, round(args.epochs * 20 / 240))  # the paper's 20 of 240 epochs
        return teacher, [terms.dkd(warmup_epochs=warmup)], {"alpha": 1.0}, {"dkd_warmup": warmup}
    if args.method == "hints+kd":
        student_layer = same_size_stage(student, "stage2_out", teacher)
        hint = terms.Hint("stage2_out", student_layer, weight=args.hint_weight, adapter=True)
        return teacher, [terms.Logits(), hint], kd, {"hint": ["stage2_out", student_layer]}
    if args.method == "at+kd":
        pairs = [(name, same_size_stage(student, name, teacher)) for name in STAGES]
        at = terms.AttentionTransfer(pairs, weight=args.at_weight)
        return teacher, [terms.Logits(), at], kd, {"at_pairs": pairs}
    if args.method == "ensemble":
        members = [teacher] + [keras.saving.load_model(p) for p in args.teachers]
        if len(members) < 2:
            raise SystemExit("--method ensemble needs --teachers (one or more other teachers)")
        taus = args.teacher_temperatures or [1.0] * len(members)
        members = [ensemble_lib.with_temperature(m, tau) for m, tau in zip(members, taus)]
        ensemble = TeacherEnsemble(members, weights=args.teacher_weights, mode="probabilities")
        return ensemble, None, kd, {"teachers": [args.teacher, *args.teachers],
                                    "teacher_temperatures": taus}
    if args.method == "teacher-init":
        report = transfer.init_from_teacher(student, teacher,
                                            mapping=INIT_MAPPING.get(student.name))
        print(transfer.format_report(report))
        return teacher, None, kd, {"init": report}
    return teacher, None, kd, {}


def limited(dataset, args):
    """The first `--limit` examples of a seeded shuffle (the eval splits are class-ordered)."""
    if not args.limit:
        return dataset
    return dataset.unbatch().shuffle(20000, seed=0).take(args.limit).batch(args.batch_size)


def training_data(splits, args):
    """The training split; with `--limit N`, a fixed random sample of N training examples
    (data seed 0, the same for every method and seed), reshuffled each epoch with the seed."""
    if not args.limit:
        return splits.train
    return data.pipeline(data.fixed_sample(splits, args.limit), args.batch_size, training=True,
                         seed=args.seed, size=args.limit, cast=tf.float32)


def build_distiller(args, splits, teacher_model, setting=None, epochs=None):
    """A fresh student (seeded) and its compiled Distiller for the method; `(student,
    distiller, facts)`."""
    keras.utils.set_random_seed(args.seed)
    student = models.build(args.student, splits.input_shape, splits.num_classes)
    teacher, term_list, options, facts = method_setup(args, student, teacher_model)
    options.update(setting or {})
    distiller = Distiller(student, teacher, terms=term_list, augment=augmentation(),
                          augment_seed=args.seed)
    steps = -(-(args.limit or splits.train_size) // args.batch_size)
    distiller.compile(optimizer=workflows.optimizer(args.lr, epochs or args.epochs, steps),
                      metrics=["accuracy"], **options)
    return student, distiller, {**facts, **options}


def run(args):
    path = os.path.join(args.output, f"{args.method}-{args.student}-seed{args.seed}.json")
    if os.path.exists(path):
        print(f"skip: {path} exists")
        return
    splits = data.load(args.data, batch_size=args.batch_size, seed=0)
    train, validation = training_data(splits, args), limited(splits.validation, args)
    teacher = keras.saving.load_model(args.teacher)
    start = time.time()
    extra = {}
    if args.method == "search":
        space = {"temperature": args.search_temperatures, "alpha": args.search_alphas}
        trials = search.search(
            lambda setting: build_distiller(args, splits, teacher, setting, args.search_epochs)[1],
            train, validation, space, epochs=args.search_epochs, patience=args.patience,
            seed=args.seed)
        print(search.format_trials(trials))
        search.plot_trials(trials, os.path.splitext(path)[0] + ".png")
        extra = {"search": trials}
        args.temperature, args.alpha = trials["best"]["temperature"], trials["best"]["alpha"]
    student, distiller, facts = build_distiller(args, splits, teacher)
    history = distiller.fit(train, epochs=args.epochs, validation_data=validation,
                            verbose=2).history
    row = {"method": args.method, "student": args.student, "seed": args.seed,
           "epochs": args.epochs, "limit": args.limit, "params": student.count_params(),
           "test_accuracy": workflows.accuracy(
               student, types.SimpleNamespace(test=limited(splits.test, args))),
           "val_accuracy": history.get("val_accuracy", [None])[-1],
           "train_seconds": round(time.time() - start, 1), "settings": facts, **extra,
           "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.items()}}
    os.makedirs(args.output, exist_ok=True)
    atomic.write_json(path, row)
    print(json.dumps({k: row[k] for k in ("method", "student", "seed", "test_accuracy")}))


def summarize(output):
    """Prints the Markdown table (`seed_table`, as examples/cifar10_summary.py writes it) of
    OUTPUT's rows: test accuracy per student and method, mean, std, per seed, gain over scratch."""
    rows = []
    for path in sorted(glob.glob(os.path.join(output, "*.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    print(seed_table.markdown(rows, score="test_accuracy", method_order=METHODS), end="")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="runs/cifar10/teacher.keras")
    p.add_argument("--teachers", nargs="*", default=[], help="other teachers, for --method ensemble")
    p.add_argument("--teacher-weights", nargs="*", type=float, default=None)
    p.add_argument("--teacher-temperatures", nargs="*", type=float, default=None,
                   help="per-teacher temperature (relative to --temperature), for ensemble")
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "cifar10"))
    p.add_argument("--method", choices=METHODS, default="kd")
    p.add_argument("--student", choices=("cnn-small", "mobile-small"), default="cnn-small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--hint-weight", type=float, default=1.0)
    p.add_argument("--at-weight", type=float, default=500.0)
    p.add_argument("--search-temperatures", nargs="*", type=float, default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--search-alphas", nargs="*", type=float, default=[0.1, 0.5, 0.9])
    p.add_argument("--search-epochs", type=int, default=10)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="examples per split (smoke tests)")
    p.add_argument("--output", default="runs/cifar10/methods")
    p.add_argument("--summarize", action="store_true",
                   help="print the Markdown table of OUTPUT's rows (mean, std, per seed, gain "
                        "over scratch)")
    args = p.parse_args()
    if args.summarize:
        summarize(args.output)
    else:
        run(args)


if __name__ == "__main__":
    main()
