"""`python -m keras_kd` is `keras-kd`."""

import sys

from keras_kd.cli import main

sys.exit(main())
