"""Quantization-aware distillation on CIFAR-10: int8 students against their float twins.

    python examples/qat_distill.py --teacher runs/cifar10/teacher.keras \
        --students mobile-small,cnn-small --student-epochs 30 --epochs 5 \
        --out runs/cifar10/qat.json

Rows, per student, all scored on the 10,000 test images (accuracy of the .tflite file for
the int8 rows, run by the LiteRT interpreter):

    float        the student distilled in float (Keras)
    ptq_int8     that student, post-training int8 (500 calibration images)
    qat_kd       TFMOT QAT of that student, distilled from the teacher, int8
    qat_labels   the same QAT on the labels only (no teacher), same budget
    native_kd    Keras 3 native QAT (keras_kd.optimize.native), distilled, int8
    float_more   control: the float student distilled --epochs more at --compress-lr, in
                 float (what the extra epochs alone give, without quantization)

Every QAT row starts from the same float distilled student and trains `--epochs` epochs at
`--compress-lr` (Adam). The results JSON is rewritten after each row; a rerun with the same
budget skips the rows it already has, and reuses the float students saved in `--workdir`.
"""

from compress_common import history, parser, run

import keras  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import workflows  # noqa: E402
from keras_kd.optimize import compress, native  # noqa: E402

ROWS = ("float", "ptq_int8", "qat_kd", "qat_labels", "native_kd", "float_more")
COLUMNS = [("name", "row", ""), ("test_accuracy", "test acc", ".4f"),
           ("size_bytes", "bytes", ","), ("top1_agreement", "agree", ".4f"),
           ("seconds", "seconds", ".1f")]


def _int8_row(report):
    return {"test_accuracy": report["tflite_accuracy"], "size_bytes": report["size_bytes"],
            "top1_agreement": report["top1_agreement"], "keras_accuracy": report["keras_accuracy"],
            "operators": report["operators"], "input_dtype": report["input_dtype"]}


def main():
    args = parser(__doc__, ROWS).parse_args()

    def compute(row, student, teacher_model, splits, path):
        if row == "float":
            return {"test_accuracy": workflows.accuracy(student, splits),
                    "params": student.count_params()}
        if row == "float_more":
            more = keras.models.clone_model(student)
            more.set_weights(student.get_weights())
            facts, _ = workflows.distill(more, teacher_model, splits, epochs=args.epochs,
                                         alpha=args.alpha, temperature=args.temperature,
                                         lr=args.compress_lr, verbose=args.verbose)
            return {"test_accuracy": facts["test_accuracy"], "history": facts["history"]}
        if row == "ptq_int8":
            keras_kd.export.to_tflite(student, path, quantization="int8",
                                      representative_data=splits.train)
            return _int8_row(keras_kd.export.verify(student, path, splits.test))
        distil = native.quantize_distill if row == "native_kd" else compress.quantize_distill
        result = distil(student, None if row == "qat_labels" else teacher_model, splits.train,
                        epochs=args.epochs, alpha=args.alpha, temperature=args.temperature,
                        learning_rate=args.compress_lr, path=path, verify_data=splits.test,
                        representative_data=splits.train, verbose=args.verbose)
        return {**_int8_row(result.report), "history": history(result.history)}

    run(args, ROWS, COLUMNS, compute)


if __name__ == "__main__":
    main()
