"""Model definitions and the functional core (``init`` / ``apply`` / ``Model``); the DLRM/DCN
ranking model."""

from .base import Model, Params, apply, buffers, init, loss_fn_of
from .ranking import DLRM

__all__ = ["Model", "Params", "apply", "buffers", "init", "loss_fn_of", "DLRM"]
