"""Training: compiled train/eval steps and the ``fit`` / ``evaluate`` loops."""

from .loop import ProgressBar, evaluate, fit
from .step import TrainState, init_state, make_eval_step, make_train_step

__all__ = [
    "TrainState",
    "init_state",
    "make_train_step",
    "make_eval_step",
    "fit",
    "evaluate",
    "ProgressBar",
]
