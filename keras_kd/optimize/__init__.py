"""Compression-aware distillation: quantization-aware and pruning-aware training against a
teacher, exported to int8 / sparse TFLite files.

Two routes:

* `quantize_distill` / `prune_distill` (TFMOT): the Keras 3 student is rebuilt as a tf_keras
  model with the same weights (`bridge.to_tf_keras`), wrapped by tensorflow-model-optimization
  and trained against the teacher *in the calling process*; tf_keras and TFMOT are imported
  only then, without switching `tf.keras` or `TF_USE_LEGACY_KERAS` (see `legacy`).
* `native` (Keras 3 only, no tf_keras, no TFMOT): fake-quantization layers inserted into the
  Keras 3 student.

Importing this package imports no tf_keras and no TFMOT.
"""

from keras_kd.optimize import bridge
from keras_kd.optimize import legacy
from keras_kd.optimize import measure
from keras_kd.optimize import native
from keras_kd.optimize.compress import CompressionResult
from keras_kd.optimize.compress import prune_distill
from keras_kd.optimize.compress import quantize_distill
