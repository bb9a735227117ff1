"""torchrs_fn: TensorFlow Recommenders rebuilt on PyTorch in a functional, JAX-like style.

Models are pure functions of explicit parameter pytrees (``init`` / ``apply``), losses and metrics
are stateless functions, optimizers are ``(init, update)`` pairs, and a compiled
``train_step(state, batch)`` drives training from Arrow-backed data.
"""

from . import data, index, layers, metrics, models, optim, random, tasks, train, tree
from .models.base import Model, Params, apply, buffers, init
from .serialization import CorruptFileError, load_tree, save_tree

__version__ = "0.1.0"

__all__ = [
    "Model",
    "Params",
    "apply",
    "buffers",
    "init",
    "save_tree",
    "load_tree",
    "CorruptFileError",
    "data",
    "index",
    "layers",
    "metrics",
    "models",
    "optim",
    "random",
    "tasks",
    "train",
    "tree",
    "__version__",
]
