"""Model definitions and the functional core (``init`` / ``apply`` / ``Model``)."""

from .base import Model, Params, apply, buffers, init, loss_fn_of

__all__ = ["Model", "Params", "apply", "buffers", "init", "loss_fn_of"]
