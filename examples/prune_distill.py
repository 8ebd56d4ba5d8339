"""Pruning-aware distillation on CIFAR-10: sparse students and their compressed file sizes.

    python examples/prune_distill.py --teacher runs/cifar10/teacher.keras \
        --students mobile-small,cnn-small --student-epochs 30 --epochs 5 --sparsity 0.8 \
        --out runs/cifar10/prune.json

Rows, per student, scored on the 10,000 test images with the exported `.tflite` file
(LiteRT interpreter):

    dense          the float distilled student, exported as is
    pruned_kd      that student pruned to --sparsity while distilled from the teacher
    pruned_labels  the same pruning on the labels only (no teacher), same budget

Pruning is TFMOT magnitude pruning (PolynomialDecay from 0 to the target over the first
--pruning-end of the steps, then training at the target) of the Conv2D / Dense kernels and
SeparableConv2D pointwise kernels (TFMOT leaves depthwise kernels dense). Each row gives the
measured sparsity of the pruned kernels and of the file's weight tensors, and the gzip -9
size of the file against the dense one.
The results JSON is rewritten after each row; a rerun with the same budget resumes.
"""

from compress_common import history, parser, run

import keras_kd  # noqa: E402
from keras_kd.optimize import compress, measure  # noqa: E402

ROWS = ("dense", "pruned_kd", "pruned_labels")
COLUMNS = [("name", "row", ""), ("test_accuracy", "test acc", ".4f"),
           ("kernel_sparsity", "sparsity", ".4f"), ("gzip_bytes", "gzip bytes", ","),
           ("gzip_ratio", "vs dense", ".3f"), ("seconds", "seconds", ".1f")]


def main():
    p = parser(__doc__, ROWS)
    p.add_argument("--sparsity", type=float, default=0.8, help="target sparsity")
    p.add_argument("--pruning-end", type=float, default=1.0,
                   help="fraction of the steps by which the target sparsity is reached; the "
                        "rest trains the pruned student at the target (default 1.0)")
    p.add_argument("--compress-decay", default="constant", choices=compress.LEARNING_RATE_DECAYS,
                   help="learning-rate decay over the pruning run (default constant)")
    p.add_argument("--quantization", default="float32", choices=keras_kd.export.QUANTIZATIONS[:4],
                   help="export mode of the dense and pruned files")
    args = p.parse_args()

    def compute(row, student, teacher_model, splits, path):
        calibration = splits.train if args.quantization == "int8" else None
        if row == "dense":
            keras_kd.export.to_tflite(student, path, quantization=args.quantization,
                                      representative_data=calibration)
            report = keras_kd.export.verify(student, path, splits.test)
            report.update(kernel_sparsity=measure.kernel_sparsity(student)[0],
                          gzip_bytes=measure.gzip_size(path), gzip_ratio=1.0)
        else:
            result = compress.prune_distill(
                student, teacher_model if row == "pruned_kd" else None, splits.train,
                target_sparsity=args.sparsity, epochs=args.epochs, alpha=args.alpha,
                temperature=args.temperature, learning_rate=args.compress_lr, path=path,
                quantization=args.quantization, representative_data=calibration,
                verify_data=splits.test, pruning_end=args.pruning_end,
                learning_rate_decay=args.compress_decay, verbose=args.verbose)
            report = {**result.report, "history": history(result.history)}
        report["test_accuracy"] = report["tflite_accuracy"]
        return report

    run(args, ROWS, COLUMNS, compute,
        settings={"sparsity": args.sparsity, "quantization": args.quantization,
                  "pruning_end": round(args.pruning_end, 4), "compress_decay": args.compress_decay},
        suffix=f".{args.quantization}")


if __name__ == "__main__":
    main()
