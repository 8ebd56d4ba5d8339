"""MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1 (TF_CONFIG)."""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import X, Y, make_student, make_teacher

import keras_kd as kd

HERE = os.path.dirname(os.path.abspath(__file__))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(tmp_path, kill_at=-1, timeout=0, epochs=3, input_kind="numpy"):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        out = tmp_path / f"worker{i}"
        out.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            "KD_SHARED": str(tmp_path), "KD_OUT": str(out), "KD_TIMEOUT": str(timeout),
            "KD_KILL_AT_EPOCH": str(kill_at if i == 1 else -1), "KD_EPOCHS": str(epochs),
            "KD_INPUT": input_kind,
            "CUDA_VISIBLE_DEVICES": "",
        }
        log = open(tmp_path / f"worker{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "mw_worker.py")],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait(procs, limit):
    start = time.time()
    try:
        return [p.wait(timeout=max(1, limit - (time.time() - start))) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.fixture
def initial(tmp_path):
    teacher, student = make_teacher(), make_student()
    np.savez(tmp_path / "init.npz", teacher=np.array(teacher.get_weights(), dtype=object),
             student=np.array(student.get_weights(), dtype=object))
    return teacher, student


def single_device_run(teacher, student, epochs=3):
    twin = make_student()
    twin.set_weights(student.get_weights())
    distiller = kd.Distiller(twin, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"], alpha=0.3,
                      temperature=3.0)
    history = distiller.fit(X[:32], Y[:32], batch_size=16, epochs=epochs, shuffle=False,
                            verbose=0)
    return twin.get_weights(), history.history


@pytest.mark.parametrize("input_kind", ["numpy", "tf.data"])
def test_two_workers_match_single_device_and_only_the_chief_writes(tmp_path, initial, input_kind):
    codes = wait(launch(tmp_path, input_kind=input_kind), limit=300)
    logs = [open(tmp_path / f"worker{i}.log").read()[-3000:] for i in range(2)]
    assert codes == [0, 0], logs
    reports = [json.load(open(tmp_path / f"worker{i}" / "report.json")) for i in range(2)]
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    w0 = np.load(tmp_path / "worker0" / "weights.npz")
    w1 = np.load(tmp_path / "worker1" / "weights.npz")
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])  # identical on both workers

    expected_w, expected_h = single_device_run(*initial)
    for key, ref in zip(w0.files, expected_w):
        np.testing.assert_allclose(w0[key], ref, atol=1e-5)
    for key in ("loss", "hard_loss", "distillation_loss", "accuracy"):
        np.testing.assert_allclose(reports[0]["history"][key], expected_h[key], rtol=1e-5)

    # The chief alone wrote the student and the backup; nothing half-written anywhere.
    assert (tmp_path / "worker0" / "student.keras").exists()
    assert sorted(os.listdir(tmp_path / "worker1")) == ["report.json", "weights.npz"]
    restored = keras.saving.load_model(tmp_path / "worker0" / "student.keras")
    np.testing.assert_allclose(restored.get_weights()[0], w0[w0.files[0]])
    assert sorted(os.listdir(tmp_path / "backup")) == ["latest.weights.h5", "training_metadata.json"]

    # keras_kd's train split (data.from_arrays: shuffled with a seed, DATA sharding) under
    # two workers: each worker reads a disjoint half, together every example once.
    seen = [r["seen"] for r in reports]
    assert len(seen[0]) == len(seen[1]) == 32
    assert not set(seen[0]) & set(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(64))


@pytest.mark.parametrize("timeout", [0, 20], ids=["no collective timeout", "timeout 20 s"])
def test_a_dead_worker_fails_the_run_in_bounded_time(tmp_path, initial, timeout):
    # Without a collective timeout, TensorFlow's coordination service notices the crashed
    # worker's missing heartbeats and aborts the collectives of the survivor.
    start = time.time()
    procs = launch(tmp_path, kill_at=1, timeout=timeout, epochs=50)
    codes = wait(procs, limit=240)
    elapsed = time.time() - start
    assert codes[1] == 17  # the worker that died
    assert codes[0] not in (0, None), "the surviving worker should fail, not succeed"
    assert elapsed < 240
    print(f"surviving worker failed {elapsed:.0f} s after launch (worker 1 died at epoch 1)")
    log = open(tmp_path / "worker0.log").read()
    assert "Error" in log or "error" in log


@pytest.mark.slow  # 52 s; documents TensorFlow's behaviour, not keras_kd's
def test_a_collective_timeout_holds_a_thread_per_collective(tmp_path, initial):
    """Why examples/multi_worker.py sets no collective timeout by default.

    TensorFlow arms the timeout of every collective op with a thread that sleeps for the whole
    timeout, so a long timeout keeps (collectives per second x timeout) threads alive: on full
    MNIST (469 steps per epoch) a 300 s timeout reached 20,947 threads in one epoch, against 248
    without. If this test fails because the difference vanished, TensorFlow fixed it.
    """
    threads = {}
    for timeout in (0, 300):
        run = tmp_path / f"timeout{timeout}"
        run.mkdir()
        (run / "init.npz").write_bytes((tmp_path / "init.npz").read_bytes())
        codes = wait(launch(run, timeout=timeout, epochs=20), limit=300)
        assert codes == [0, 0], open(run / "worker0.log").read()[-3000:]
        report = json.load(open(run / "worker0" / "report.json"))
        threads[timeout] = report["threads"]
    steps = report["steps"]
    print(f"threads at the end of {steps} steps: {threads}")  # measured: 114 vs 1,646
    assert threads[0] < 400
    assert threads[300] - threads[0] >= 10 * steps
