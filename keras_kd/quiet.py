"""Keeps TensorFlow's native log lines out of the `keras-kd` command's output.

TensorFlow's C++ runtime writes to file descriptor 2 directly: oneDNN and CUDA notices at
import (before absl logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` does not reach them),
SavedModel loader and flatbuffer notices at every TFLite export, the XNNPACK delegate notice.
`enable()` sets `TF_CPP_MIN_LOG_LEVEL` and points descriptor 2 at a log file *before*
TensorFlow is imported, while Python's `sys.stderr` (tracebacks, argparse errors, warnings)
keeps writing to the terminal. `keras-kd --verbose 2` skips it and shows everything.
"""

import atexit
import os
import sys
import tempfile
import warnings

LOG_LEVEL = "2"  # TensorFlow's C++ logs: errors only (what still comes goes to the log file)


def enable(log_path=None):
    """Sends native stderr to `log_path` (default: a temporary file); returns that path.

    Must run before TensorFlow is imported; afterwards it does nothing and returns None
    (e.g. when the CLI's `main` is called from a process that already imported it).
    The log file is deleted at a clean exit and kept (and named on stderr) otherwise.
    """
    if "tensorflow" in sys.modules:
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL)
    warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="keras-kd-native-", suffix=".log")
    else:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, errors="backslashreplace")
    atexit.register(_tidy, log_path)
    return log_path


_FAILED = []


def _tidy(log_path):
    if _FAILED:
        print(f"TensorFlow's native log of this run: {log_path}", file=sys.stderr)
    elif os.path.exists(log_path):
        os.remove(log_path)


def mark_failed():
    """Keeps the native log at exit (the CLI calls it when a command fails)."""
    _FAILED.append(True)
