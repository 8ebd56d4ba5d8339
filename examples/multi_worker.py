"""Multi-machine distillation with MultiWorkerMirroredStrategy.

On a real cluster, run this script on every machine with the same cluster in TF_CONFIG and
that machine's own task. Two machines, 10.0.0.1 (chief: worker 0) and 10.0.0.2:

    # on 10.0.0.1
    export TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    python examples/multi_worker.py --teacher /shared/teacher.keras --data /shared/mnist.npz \
        --output /shared/student.keras --backup-dir /shared/backup
    # on 10.0.0.2: the same, with "index": 1

Every worker needs the teacher and the data (shared storage or a copy each); the backup
directory must be storage all workers can read. Worker 0 is the chief: it alone writes the
student and the backups (keras_kd.callbacks). Each worker reads a different shard of every
global batch (DATA auto-sharding of in-memory data). If the run is interrupted, run the same
command again: BackupAndRestore resumes from the last completed epoch.

To try it on one machine, `--local 2` trains a small teacher if none is given and launches two
worker processes on 127.0.0.1 with the right TF_CONFIG (default data: digits):

    python examples/multi_worker.py --local 2 --epochs 3

No collective timeout by default: TensorFlow arms the timeout of every collective op with a
thread that sleeps for the whole timeout, so `--timeout 300` on full MNIST kept 20,947 threads
(two workers) alive after one epoch (248 without) and longer runs abort when thread creation fails. A crashed
worker fails the run without it (its missed heartbeats abort the collectives: 16 s in the
tests); set a short `--timeout` only to catch workers that hang while still alive.
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

DEFAULT_DATA = os.environ.get(
    "KERAS_KD_MNIST",
    str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"),
)


def worker(args):
    import keras

    import keras_kd as kd

    strategy = kd.distribute.get_strategy("multi_worker", collective_timeout=args.timeout or None)
    global_batch, per_replica = kd.distribute.batch_sizes(
        strategy, per_replica_batch_size=args.per_replica_batch_size)
    splits = kd.data.load(args.data, batch_size=global_batch)
    with strategy.scope():
        teacher = keras.saving.load_model(args.teacher)
        student = kd.models.build(args.student, splits.input_shape, splits.num_classes)
        distiller = kd.Distiller(student=student, teacher=teacher)
        distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=args.alpha,
                          temperature=args.temperature)
    task_type, index = kd.callbacks.task()
    print(f"worker {index}: {strategy.num_replicas_in_sync} replicas, global batch {global_batch}"
          f" ({per_replica} per replica), chief={kd.callbacks.is_chief()}", flush=True)
    distiller.fit(splits.train, epochs=args.epochs, verbose=2 if kd.callbacks.is_chief() else 0,
                  callbacks=[kd.callbacks.BackupAndRestore(args.backup_dir),
                             kd.callbacks.StudentCheckpoint(args.output)])
    # evaluate is collective under MultiWorkerMirroredStrategy: every worker takes part.
    logs = distiller.evaluate(splits.test, verbose=0, return_dict=True)
    if kd.callbacks.is_chief():
        print(f"chief: test accuracy {logs['accuracy']:.4f}; student saved to {args.output}")


def local(args):
    """Launches `--local N` workers on 127.0.0.1 (a try-out of the real set-up)."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="keras_kd_mw_"))
    if not args.teacher:
        from keras_kd import cli

        args.teacher = str(work / "teacher.keras")
        cli.main(["train-teacher", "--data", args.data, "--model", "mlp-teacher", "--epochs", "2",
                  "--output", args.teacher, "--verbose", "2"])
    ports = []
    for _ in range(args.local):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(args.local):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})}
        cmd = [sys.executable, __file__, "--teacher", args.teacher, "--data", args.data,
               "--student", args.student, "--epochs", str(args.epochs),
               "--alpha", str(args.alpha), "--temperature", str(args.temperature),
               "--timeout", str(args.timeout),
               "--output", args.output or str(work / "student.keras"),
               "--backup-dir", args.backup_dir or str(work / "backup"),
               "--per-replica-batch-size", str(args.per_replica_batch_size)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    print(f"workers exited with {codes}; files in {work}")
    return max(codes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", help="trained teacher .keras (every worker must read it)")
    p.add_argument("--data", default=None,
                   help="dataset (see keras_kd.data.load). Default: ../shared/data/mnist.npz, or "
                        "digits with --local")
    p.add_argument("--student", default="mlp-student", help="reference student model")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--per-replica-batch-size", type=int, default=64,
                   help="examples per replica per step; the global batch is this x replicas")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--output", default="student.keras", help="where the chief saves the student")
    p.add_argument("--backup-dir", default="backup", help="BackupAndRestore directory (shared)")
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds a collective may wait for a stuck worker before the run fails; "
                        "0 (default): no timeout. Each collective holds a thread for this long, "
                        "so keep it short (see above)")
    p.add_argument("--local", type=int, default=0, help="launch N local workers (try-out)")
    args = p.parse_args(argv)
    args.data = args.data or ("digits" if args.local else DEFAULT_DATA)
    if args.local:
        return local(args)
    if not args.teacher:
        p.error("--teacher is required (except with --local)")
    worker(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
