"""``MLP``: TFRS's ``tfrs.layers.blocks.MLP``, a stack of Keras ``Dense`` layers, as a definition.

Also home of the activation names the ranking layers share (``"relu"``, ``"sigmoid"``, ...),
resolved the way ``tf.keras.activations.get`` resolves them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP"]

Activation = str | Callable[[torch.Tensor], torch.Tensor] | None
"""A Keras activation name (``"relu"``, ``"linear"``, ...), a callable, or ``None``."""

# Keras's definitions: gelu is exact (approximate=False), swish is x * sigmoid(x), elu's alpha is 1.
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "swish": F.silu,
    "silu": F.silu,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "exponential": torch.exp,
}


def _resolve_activation(
    activation: Activation, argument: str
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``None`` for no activation (Keras ``None`` / ``"linear"``), else the function."""
    if activation is None or activation == "linear":
        return None
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"{argument}: unknown activation {activation!r}; use one of "
                f"{['linear', *sorted(_ACTIVATIONS)]}, None or a callable"
            ) from None
    if callable(activation):
        return activation
    raise TypeError(
        f"{argument}: activation must be a name, a callable or None, got "
        f"{type(activation).__name__}"
    )


def _check_width(x: torch.Tensor, expected: int, layer: str, argument: str) -> None:
    if x.ndim < 1 or x.shape[-1] != expected:
        raise ValueError(
            f"{layer}: expected {argument} of shape [..., {expected}], got {tuple(x.shape)}"
        )


class MLP(nn.Module):
    """A multi-layer perceptron: ``[..., in_features] -> [..., units[-1]]``.

    TFRS's ``tfrs.layers.blocks.MLP(units, use_bias, activation, final_activation)``: one Keras
    ``Dense`` per entry of ``units``, ``activation`` after every layer but the last and
    ``final_activation`` after the last. ``torchrs_fn.init`` gives each layer Keras's ``Dense``
    initialisation (glorot-uniform weight, zero bias).

    Unlike Keras, torch needs the input width when the layer is defined (Keras infers it on the
    first call), so it is the first argument, ``in_features``. Each layer is an ``nn.Linear``, so
    the parameters are ``{"layers": {"0": {"weight": [units[0], in_features], "bias": [units[0]]},
    "1": ...}}``; a weight is the transpose of the matching Keras kernel.

    Args:
        in_features: the width of the inputs.
        units: the width of each layer, in order (at least one).
        use_bias: give every layer a bias (Keras ``use_bias``).
        activation: applied after every layer but the last (default ``"relu"``, as in TFRS): a
            Keras activation name, a callable, or ``None`` / ``"linear"`` for none.
        final_activation: applied after the last layer (default ``None``, as in TFRS).
    """

    def __init__(
        self,
        in_features: int,
        units: Sequence[int],
        *,
        use_bias: bool = True,
        activation: Activation = "relu",
        final_activation: Activation = None,
    ) -> None:
        super().__init__()
        if isinstance(units, int) or not isinstance(units, Sequence):
            raise TypeError(f"MLP: units must be a sequence of ints, got {units!r}")
        units = [int(u) for u in units]
        if not units:
            raise ValueError("MLP: units must name at least one layer, got []")
        if int(in_features) < 1 or any(u < 1 for u in units):
            raise ValueError(
                f"MLP: in_features and units must be positive, got in_features={in_features}, "
                f"units={units}"
            )
        self.in_features = int(in_features)
        self.units = tuple(units)
        self.out_features = units[-1]
        self.use_bias = bool(use_bias)
        self.activation = _resolve_activation(activation, "MLP activation")
        self.final_activation = _resolve_activation(final_activation, "MLP final_activation")
        widths = [self.in_features, *units]
        self.layers = nn.ModuleList(
            nn.Linear(widths[i], widths[i + 1], bias=self.use_bias) for i in range(len(units))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., in_features]`` floating -> ``[..., units[-1]]``."""
        _check_width(x, self.in_features, f"MLP({self.in_features}, {list(self.units)})", "inputs")
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            act = self.final_activation if i == last else self.activation
            if act is not None:
                x = act(x)
        return x

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, units={list(self.units)}"
