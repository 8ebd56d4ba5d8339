"""Trains the CIFAR-10 reference teacher (ResNet-20, or ResNet-8 with --model, raw pixels in)
once, for reuse.

    python examples/cifar10_teacher.py --data ../shared/data/cifar10 --epochs 30 \
        --output runs/cifar10/teacher.keras

Recipe: SGD with Nesterov momentum 0.9, learning rate 0.1 warmed up linearly over 2 epochs
then cosine-decayed to 0, weight decay 5e-4, batch 128, random translation by up to 4 pixels
(reflect padding) and horizontal flips. The validation split (5,000 training images, seeded)
is scored each epoch; the test set once at the end. Writes OUTPUT and OUTPUT.json.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_kd import atomic, data, models, workflows  # noqa: E402


def augmentation(seed):
    return keras.Sequential([
        keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed),
        keras.layers.RandomFlip("horizontal", seed=seed + 1),
    ], name="augment")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "cifar10"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=("resnet-teacher", "resnet8-teacher"),
                   default="resnet-teacher", help="resnet8-teacher: a second, cheaper teacher "
                                                  "(for --method ensemble of methods_cifar10.py)")
    p.add_argument("--output", default="runs/cifar10/teacher.keras")
    args = p.parse_args()
    keras.utils.set_random_seed(args.seed)
    splits = data.load(args.data, batch_size=128, seed=args.seed)
    augment = augmentation(args.seed)
    train = splits.train.map(lambda x, y: (augment(x, training=True), y),
                             num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    teacher = models.build(args.model, splits.input_shape, splits.num_classes)
    steps = -(-splits.train_size // 128)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=(args.epochs - 2) * steps, warmup_target=0.1, warmup_steps=2 * steps)
    teacher.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    history = teacher.fit(train, validation_data=splits.validation, epochs=args.epochs, verbose=2)
    seconds = time.time() - start
    test_acc = teacher.evaluate(splits.test, verbose=0, return_dict=True)["accuracy"]
    atomic.save_model(teacher, args.output)
    results = {"model": args.model, "params": teacher.count_params(), "epochs": args.epochs,
               "seed": args.seed, "train_seconds": round(seconds, 1), "test_accuracy": test_acc,
               "val_accuracy": history.history["val_accuracy"][-1],
               "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items()}}
    atomic.write_json(args.output + ".json", results)
    print(json.dumps({k: v for k, v in results.items() if k != "history"}))


if __name__ == "__main__":
    main()
