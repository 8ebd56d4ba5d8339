#!/usr/bin/env python3
"""Export a trained .keras classifier to TFLite and verify the file against it.

    python export/export_tflite.py student.keras --quantization int8 \
        --calibration-data ../shared/data/mnist.npz --output student_int8.tflite

Same as `keras-kd export`; this script exists for export pipelines that call a file.
"""

import sys

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):
        argv = ["--model", argv[0], *argv[1:]]
    argv = [{"--calibration-data": "--data"}.get(a, a) for a in argv]
    # Imported as the `keras-kd` command, so that it validates the arguments and quiets
    # TensorFlow's native logs before TensorFlow loads.
    sys.argv = ["keras-kd", "export", *argv]
    from keras_kd import cli

    sys.exit(cli.main())
