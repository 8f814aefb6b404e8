"""kcnn: build, train, compare and understand convolutional networks with Keras 3.

Importing this package is cheap: TensorFlow is imported only by the modules that
build or train models, so `kcnn --help` and `kcnn list` answer at once.
"""

import os

# TensorFlow's C++ start-up chatter hides the one line a user needs to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
