"""Training: compiled train/eval steps, the ``fit`` / ``evaluate`` loops, checkpoints and vmapped
``sweep``s."""

from .autocompile import AutoCompile
from .checkpoint import Checkpoint, Checkpointer
from .loop import ProgressBar, evaluate, fit
from .step import TrainState, init_state, make_eval_step, make_train_step, step_hparams
from .sweeps import SweepResult, make_sweep_step, stack_states, sweep

__all__ = [
    "TrainState",
    "init_state",
    "make_train_step",
    "make_eval_step",
    "AutoCompile",
    "fit",
    "evaluate",
    "ProgressBar",
    "Checkpointer",
    "Checkpoint",
    "step_hparams",
    "sweep",
    "make_sweep_step",
    "stack_states",
    "SweepResult",
]
