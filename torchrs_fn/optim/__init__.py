"""Functional optimizers in the optax shape: ``init(params)``, ``update(grads, state, params)``."""

from .base import (
    ChainState,
    GradientTransformation,
    PartitionState,
    apply_updates,
    chain,
    hparam_names,
    label_by_path,
    partition,
    set_hparams,
)
from .schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_constant_schedule,
    warmup_cosine_decay_schedule,
)
from .transforms import (
    AdagradState,
    AdamState,
    ClipState,
    SgdState,
    adagrad,
    adam,
    adamw,
    clip_by_global_norm,
    sgd,
)

__all__ = [
    "GradientTransformation",
    "apply_updates",
    "chain",
    "partition",
    "label_by_path",
    "hparam_names",
    "set_hparams",
    "sgd",
    "adagrad",
    "adam",
    "adamw",
    "clip_by_global_norm",
    "constant_schedule",
    "linear_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "piecewise_constant_schedule",
    "ChainState",
    "PartitionState",
    "SgdState",
    "AdagradState",
    "AdamState",
    "ClipState",
]
