"""keras_kd: knowledge distillation for Keras 3 on TensorFlow, with TFLite/LiteRT export.

Importing keras_kd loads Keras and TensorFlow only; optional dependencies
(tensorflow-datasets, tensorflow-model-optimization, tf-keras, ai-edge-litert, scikit-learn,
matplotlib) are imported inside the functions that need them.
"""

__version__ = "0.1.0"

from keras_kd import callbacks
from keras_kd import data
from keras_kd import distribute
from keras_kd import edge_parity
from keras_kd import export
from keras_kd import losses
from keras_kd import models
from keras_kd import precision
from keras_kd.distiller import Distiller
from keras_kd.teachers import TeacherEnsemble

__all__ = [
    "Distiller", "TeacherEnsemble", "callbacks", "data", "distribute", "edge_parity", "export",
    "losses", "models", "precision", "__version__",
]
