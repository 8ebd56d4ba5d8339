"""CIFAR-10: students from scratch, distilled with keras_kd, and with keras.distillation.

For each student and seed, three runs from the same initial weights, on the same views (same
data order, same augmentation, batch for batch), with the same optimizer and budget:

- `scratch`: the student alone on the labels (a plain `keras.Model.fit`);
- `keras_kd`: `keras_kd.Distiller` with consistent augmentation, the teacher's outputs on
  those views computed once (`keras_kd.views.cache_views`, shared by every student of a seed);
- `keras_distillation`: Keras' own `keras.distillation.Distiller` in its best configuration
  (`LogitsDistillation(temperature=T, loss=keras.losses.KLDivergence())`, the softmax + T**2
  path), running the teacher live on the same views;
- `keras_kd_live` (on request): `keras_kd.Distiller` running the teacher live on the same views
  instead of reading its stored outputs (stored views against live consistent distillation);
- `keras_kd_hints` (on request): keras_kd's logits distillation plus a FitNets hint (Romero et
  al. 2015: MSE between the teacher's `stage2_out` and the student stage of the same height
  and width, through a trained 1x1 adapter, weight `--hint-weight`), the teacher live on the
  same views (its intermediate features are not stored).

    python examples/cifar10_teacher.py                      # once: runs/cifar10/teacher.keras
    python examples/cifar10.py --seeds 0,1,2 --epochs 15     # the comparison

Rows are appended to `--out` (JSON, written atomically) as they finish; a re-run skips the rows
already there, so an interrupted comparison resumes. `--eval validation` scores on the
validation split (for choosing hyperparameters); the default scores the test set once per run.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import atomic, data, models, views, workflows  # noqa: E402
from methods_cifar10 import same_size_stage  # noqa: E402

METHODS = ("scratch", "keras_kd", "keras_distillation")
# `keras_kd_live`: keras_kd's Distiller running the teacher live on the same views (issue 14:
# does a student trained from stored teacher outputs match live consistent distillation?)
ALL_METHODS = METHODS + ("keras_kd_live", "keras_kd_hints")
HINT_LAYER = "stage2_out"  # the teacher's middle stage, as in examples/methods_cifar10.py
AUGMENTATIONS = {
    "crop_flip": lambda: [keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect"),
                          keras.layers.RandomFlip("horizontal")],
    "crop_flip_mixup": lambda: [keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect"),
                                keras.layers.RandomFlip("horizontal"), keras.layers.MixUp(0.2)],
}


def _optimizer(args, steps):
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * steps)
    return keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)


def _hard_loss(mixes):
    # MixUp/CutMix turn labels into mixed one-hot rows
    return (keras.losses.CategoricalCrossentropy(from_logits=True) if mixes
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _relevant(config, method):
    """The settings a method's result depends on: a scratch row serves every KD setting, a
    keras.distillation row every `--kd-epochs` (keras_kd's alone)."""
    only_ours = ("kd_epochs", "loss", "dkd_alpha", "dkd_beta", "dkd_warmup", "teacher_dtype",
                 "hint_weight")
    ignored = {"scratch": ("alpha", "temperature") + only_ours,
               "keras_distillation": only_ours,
               "keras_kd": ("hint_weight",), "keras_kd_live": ("hint_weight",)}.get(method, ())
    return {k: v for k, v in config.items() if k not in ignored}


def run(method, student, teacher, replay, args):
    """Trains `student` by `method` on the replayed views; returns seconds per epoch."""
    steps = replay.steps_per_epoch
    fit = dict(epochs=args.epochs, steps_per_epoch=steps, verbose=args.verbose)
    mixes = replay.augment.mixes_labels
    start = time.time()
    if method == "scratch":
        student.compile(optimizer=_optimizer(args, steps), loss=_hard_loss(mixes))
        student.fit(replay.dataset(teacher_logits=False, augmented=True), **fit)
    elif method in ("keras_kd", "keras_kd_live", "keras_kd_hints"):
        live = method != "keras_kd"
        # stored views already hold the outputs of a teacher in --teacher-dtype
        common = dict(augment=replay.augment, teacher_dtype=args.teacher_dtype if live else None)
        if args.loss == "dkd":
            # Zhao et al. 2022: CE + warm-up * DKD(alpha, beta, T); alpha = 1 (CE weight 1)
            distiller = keras_kd.Distiller(student, teacher, **common, terms=[
                keras_kd.terms.dkd(alpha=args.dkd_alpha, beta=args.dkd_beta,
                                   temperature=args.temperature,
                                   warmup_epochs=args.dkd_warmup)])
            distiller.compile(optimizer=_optimizer(args, steps), alpha=1.0)
        else:
            temperature = None if args.loss == "logits_mse" else args.temperature
            if method == "keras_kd_hints":
                hint = keras_kd.terms.Hint(
                    HINT_LAYER, same_size_stage(student, HINT_LAYER, teacher),
                    weight=args.hint_weight, adapter=True)
                distiller = keras_kd.Distiller(student, teacher, **common, terms=[
                    keras_kd.terms.Logits(args.loss), hint])
                distiller.compile(optimizer=_optimizer(args, steps), alpha=args.alpha,
                                  temperature=temperature)
            else:
                distiller = keras_kd.Distiller(student, teacher, **common)
                distiller.compile(optimizer=_optimizer(args, steps), alpha=args.alpha,
                                  distillation_loss_fn=args.loss, temperature=temperature)
        callbacks = [replay.callback()]
        if args.kd_epochs is not None and args.kd_epochs < args.epochs:
            # distil first, then fit the labels alone (Cho & Hariharan 2019, "early-stopped" KD)
            callbacks.append(keras_kd.schedules.ScheduleCallback(
                "alpha", keras_kd.schedules.Step([args.alpha, 1.0], [args.kd_epochs])))
        # live: the same views without the stored logits, so the Distiller runs the teacher
        distiller.fit(replay.dataset(teacher_logits=not live), callbacks=callbacks, **fit)
    else:
        distiller = keras.distillation.Distiller(
            teacher=teacher, student=student, student_loss_weight=args.alpha,
            distillation_losses=keras.distillation.LogitsDistillation(
                temperature=args.temperature, loss=keras.losses.KLDivergence()))
        distiller.compile(optimizer=_optimizer(args, steps), loss=_hard_loss(mixes))
        distiller.fit(replay.dataset(teacher_logits=False, augmented=True), **fit)
    return (time.time() - start) / args.epochs


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "cifar10"))
    p.add_argument("--teacher", default="runs/cifar10/teacher.keras")
    p.add_argument("--students", default="cnn-small,mobile-small")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated, of {', '.join(ALL_METHODS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=1e-2)  # best of 2e-3, 5e-3, 1e-2 on validation
    p.add_argument("--weight-decay", type=float, default=4e-3)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--loss", default="kl_divergence",
                   choices=("kl_divergence", "logits_mse", "dkd"),
                   help="keras_kd only: the distillation loss (logits_mse: Ba & Caruana 2014, "
                        "no temperature; dkd: Decoupled KD, Zhao et al. 2022, with the labels' "
                        "weight 1 and --dkd-alpha/--dkd-beta/--dkd-warmup, --alpha unused)")
    p.add_argument("--dkd-alpha", type=float, default=1.0, help="--loss dkd: TCKD weight")
    p.add_argument("--dkd-beta", type=float, default=8.0, help="--loss dkd: NCKD weight")
    p.add_argument("--dkd-warmup", type=int, default=3,
                   help="--loss dkd: epochs over which the DKD weight rises linearly (the "
                        "paper: 20 of 240)")
    p.add_argument("--kd-epochs", type=int, default=None,
                   help="keras_kd only: distil for the first N epochs, then alpha = 1 (labels "
                        "alone); default: every epoch")
    p.add_argument("--view-epochs", type=int, default=None,
                   help="epochs of augmented views to store (default: --epochs); a longer "
                        "run replays them cyclically, for every method alike")
    p.add_argument("--teacher-dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="keras_kd methods only: the teacher's precision for the stored views "
                        "(keras_kd) or the live teacher (keras_kd_live); the student stays "
                        "float32")
    p.add_argument("--hint-weight", type=float, default=1.0,
                   help="keras_kd_hints only: the hint term's weight")
    p.add_argument("--augment", default="crop_flip", choices=sorted(AUGMENTATIONS))
    p.add_argument("--eval", default="test", choices=("test", "validation"))
    p.add_argument("--limit", type=int, default=None,
                   help="train on a fixed random sample of N training images (the same for "
                        "every seed and method; the folder lists images class by class, so the "
                        "first N would hold only the first classes)")
    p.add_argument("--views-dir", default="runs/cifar10/views")
    p.add_argument("--out", default="runs/cifar10/compare.json")
    p.add_argument("--save-dir", default=None,
                   help="save each trained student here as STUDENT_METHOD_sSEED.keras")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    args = p.parse_args()

    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        p.error(f"--methods: {','.join(unknown)} is not one of {', '.join(ALL_METHODS)}")
    if "keras_kd_hints" in methods and args.loss == "dkd":
        p.error("--methods keras_kd_hints takes the logits losses (kl_divergence, logits_mse), "
                "not --loss dkd")
    splits = data.load(args.data, batch_size=128, seed=0)
    evaluation = splits.test if args.eval == "test" else splits.validation
    examples = data.fixed_sample(splits, args.limit) if args.limit else splits.train_examples
    teacher = keras.saving.load_model(args.teacher)
    rows = json.load(open(args.out))["rows"] if os.path.exists(args.out) else []
    args.view_epochs = args.view_epochs or args.epochs
    skip = ("verbose", "out", "save_dir", "seeds", "students", "methods")
    if args.loss != "dkd":
        skip += ("dkd_alpha", "dkd_beta", "dkd_warmup")
    # options added after the first rows are left out at the value they stand for when absent,
    # so rows made before them stay valid
    absent = {"kd_epochs": None, "loss": "kl_divergence", "view_epochs": args.epochs,
              "teacher_dtype": "float32", "hint_weight": 1.0}
    config = {k: v for k, v in vars(args).items()
              if k not in skip and not (k in absent and v == absent[k])}
    done = {(r["student"], r["seed"], r["method"]) for r in rows
            if _relevant(r["config"], r["method"]) == _relevant(config, r["method"])}
    teacher_accuracy = workflows.accuracy_on(teacher, evaluation)
    print(f"teacher {args.eval} accuracy {teacher_accuracy:.4f}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        start = time.time()
        precision = "" if args.teacher_dtype == "float32" else f"_{args.teacher_dtype}"
        replay = views.cache_views(
            teacher, examples, AUGMENTATIONS[args.augment](), epochs=args.view_epochs,
            batch_size=128, seed=seed, teacher_dtype=args.teacher_dtype,
            path=os.path.join(args.views_dir, f"{args.augment}_e{args.view_epochs}_s{seed}"
                                              f"_n{args.limit or 'all'}{precision}.npz"))
        views_seconds = time.time() - start
        for name in args.students.split(","):
            keras.utils.set_random_seed(seed)
            initial = models.build(name, splits.input_shape, splits.num_classes)
            for method in methods:
                if (name, seed, method) in done:
                    continue
                keras.utils.set_random_seed(seed)
                student = models.build(name, splits.input_shape, splits.num_classes)
                student.set_weights(initial.get_weights())
                seconds = run(method, student, teacher, replay, args)
                row = {"student": name, "params": student.count_params(), "seed": seed,
                       "method": method,
                       f"{args.eval}_accuracy": workflows.accuracy_on(student, evaluation),
                       "seconds_per_epoch": round(seconds, 1),
                       "views_seconds": round(views_seconds, 1),
                       "teacher_accuracy": teacher_accuracy, "config": config}
                if args.save_dir:
                    row["model"] = os.path.join(args.save_dir, f"{name}_{method}_s{seed}.keras")
                    atomic.save_model(student, row["model"])
                rows.append(row)
                atomic.write_json(args.out, {"rows": rows})
                print(json.dumps({k: v for k, v in row.items() if k != "config"}))


if __name__ == "__main__":
    main()
