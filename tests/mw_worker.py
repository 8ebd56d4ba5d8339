"""One worker of the multi-worker tests (run by test_multi_worker.py with TF_CONFIG set).

Environment: KD_SHARED (initial weights, backup dir: storage all workers see), KD_OUT (this
worker's own directory, as on a separate machine), KD_KILL_AT_EPOCH (die at that epoch),
KD_TIMEOUT (collective timeout in seconds), KD_INPUT ("numpy" or "tf.data").
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from helpers import X, Y, make_student, make_teacher  # noqa: E402

import keras_kd as kd  # noqa: E402
from keras_kd import callbacks as kd_callbacks  # noqa: E402

shared, out = os.environ["KD_SHARED"], os.environ["KD_OUT"]
kill_at = int(os.environ.get("KD_KILL_AT_EPOCH", "-1"))
timeout = float(os.environ.get("KD_TIMEOUT", "0")) or None
epochs = int(os.environ.get("KD_EPOCHS", "3"))


class Die(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == kill_at:
            os._exit(17)  # a crash: no clean-up, no goodbye to the peers


strategy = kd.distribute.get_strategy("multi_worker", collective_timeout=timeout)
weights = np.load(os.path.join(shared, "init.npz"), allow_pickle=True)
with strategy.scope():
    teacher = make_teacher(train=False)
    teacher.set_weights(list(weights["teacher"]))
    student = make_student()
    student.set_weights(list(weights["student"]))
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"], alpha=0.3,
                      temperature=3.0)
callbacks = [
    kd_callbacks.BackupAndRestore(os.path.join(shared, "backup"), delete_checkpoint=False),
    kd_callbacks.StudentCheckpoint(os.path.join(out, "student.keras")),
    Die(),
]
if os.environ.get("KD_INPUT") == "tf.data":  # the same examples as a pipeline of global batches
    train = tf.data.Dataset.from_tensor_slices((X[:32], Y[:32])).batch(16)
    history = distiller.fit(train, epochs=epochs, verbose=0, callbacks=callbacks)
else:
    history = distiller.fit(X[:32], Y[:32], batch_size=16, epochs=epochs, shuffle=False,
                            verbose=0, callbacks=callbacks)

# Which examples does each worker read from keras_kd's own (shuffled, seeded) train split?
# Each example's input is its id; both workers build the pipeline independently.
ids = np.arange(64, dtype="float32")[:, None]
splits = kd.data.from_arrays((ids, np.arange(64) % 4), (ids[:8], np.arange(8) % 4),
                             batch_size=16, seed=0)
seen = []
for x, _ in strategy.experimental_distribute_dataset(splits.train):
    seen += [int(i) for r in strategy.experimental_local_results(x) for i in r.numpy().ravel()]

np.savez(os.path.join(out, "weights.npz"), *student.get_weights())
with open("/proc/self/status") as f:  # native threads (TensorFlow's included), Linux
    threads = next((int(line.split()[1]) for line in f if line.startswith("Threads:")), -1)
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump({"history": history.history, "seen": seen, "chief": kd_callbacks.is_chief(strategy),
               "replicas": strategy.num_replicas_in_sync, "threads": threads,
               "steps": epochs * 2}, f)  # 32 examples in global batches of 16
