"""kcnn: build, train, compare and understand convolutional networks with Keras 3.

Importing this package is cheap: TensorFlow is imported only by the modules that
build or train models, so `kcnn --help` and `kcnn list` answer at once.
"""

import os

# TensorFlow's C++ start-up chatter hides the one line a user needs to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN's CPU kernels, which PyTorch uses too. TensorFlow turns them on by itself only on CPUs
# with AVX-512 VNNI or newer; on an AVX2 machine (a laptop, an AMD EPYC) they halve a LeNet-5
# epoch (benchmarks/NOTES.md, 2026-12-01). TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's own kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
