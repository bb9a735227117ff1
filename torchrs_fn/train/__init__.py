"""Training: compiled train/eval steps, the ``fit`` / ``evaluate`` loops, checkpoints, vmapped
``sweep``s and data parallelism (``train.distributed``)."""

from . import distributed as distributed
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
# ``train.distributed`` is a submodule (imported above so that ``train.distributed`` works), not
# a name in ``__all__``: its functions are host-side collectives, listed in its own ``__all__``.
