"""rnnscan: Keras's ``backend.rnn`` loop on NumPy, JAX, PyTorch and TensorFlow arrays."""

from ._rnn import rnn

__version__ = "0.2.0"

__all__ = ["rnn", "__version__"]
