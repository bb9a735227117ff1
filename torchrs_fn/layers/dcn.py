"""Deep & Cross Network layers: TFRS's ``Cross`` and ``MultiLayerDCN`` as module definitions.

A cross layer computes ``x_{l+1} = x0 * (W x_l + b + diag_scale * x_l) + x_l`` (DCN-v2, Wang et al.
2020, eq. 1; low-rank ``W = V U``, eq. 2). Kernels are initialised as Keras initialises them: by
default ``"truncated_normal"``, Keras's ``TruncatedNormal()`` (mean 0, stddev 0.05, values beyond
two standard deviations redrawn), and zero biases. Keras initialiser names are resolved by
``keras_initializer`` here, so the distributions and scales match Keras (the values themselves
cannot: TF's random streams are not torch's).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .mlp import Activation, _check_width, _resolve_activation

__all__ = ["Cross", "MultiLayerDCN", "Initializer", "keras_initializer"]

Initializer = str | Callable[[torch.Tensor, torch.Generator], None]
"""A Keras initialiser name, or ``fn(tensor, generator)`` that fills ``tensor`` in place."""

# The standard deviation of a unit normal truncated to [-2, 2] (Keras's VarianceScaling constant).
_TRUNCATED_STD = 0.87962566103423978


def _fans(t: torch.Tensor) -> tuple[int, int]:
    """Keras's fans for a torch-layout tensor: ``[out, in]`` weights, ``[n]`` vectors."""
    if t.ndim < 1:
        return 1, 1
    if t.ndim == 1:
        return t.shape[0], t.shape[0]
    fan_out, fan_in = t.shape[0], math.prod(t.shape[1:])
    return fan_in, fan_out


def _truncated_normal_(t: torch.Tensor, stddev: float, g: torch.Generator) -> None:
    # Keras / tf.random.truncated_normal: N(0, stddev) with values beyond 2 stddev redrawn.
    nn.init.trunc_normal_(t, 0.0, stddev, -2.0 * stddev, 2.0 * stddev, generator=g)


def _variance_scaling(scale: float, mode: str, distribution: str):
    def fill(t: torch.Tensor, g: torch.Generator) -> None:
        fan_in, fan_out = _fans(t)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, n)
        if distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            t.uniform_(-bound, bound, generator=g)
        else:  # Keras's "truncated_normal": the stddev is corrected for the truncation.
            _truncated_normal_(t, math.sqrt(variance) / _TRUNCATED_STD, g)

    return fill


_INITIALIZERS: dict[str, Callable[[torch.Tensor, torch.Generator], None]] = {
    "zeros": lambda t, g: t.zero_(),
    "ones": lambda t, g: t.fill_(1.0),
    "random_normal": lambda t, g: t.normal_(0.0, 0.05, generator=g),
    "random_uniform": lambda t, g: t.uniform_(-0.05, 0.05, generator=g),
    "truncated_normal": lambda t, g: _truncated_normal_(t, 0.05, g),
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "truncated_normal"),
}


def keras_initializer(
    initializer: Initializer, argument: str = "initializer"
) -> Callable[[torch.Tensor, torch.Generator], None]:
    """Resolve a Keras initialiser name (as ``tf.keras.initializers.get`` does) to ``fn(t, g)``.

    Names and their Keras defaults: ``"zeros"``, ``"ones"``, ``"random_normal"`` (N(0, 0.05)),
    ``"random_uniform"`` (U(-0.05, 0.05)), ``"truncated_normal"`` (N(0, 0.05) truncated at two
    standard deviations, so its actual standard deviation is ``0.05 * 0.8796``),
    ``"glorot_uniform"`` / ``"glorot_normal"``, ``"he_uniform"`` / ``"he_normal"``,
    ``"lecun_uniform"`` / ``"lecun_normal"``. Fans are Keras's for the kernel that a torch
    ``[out, in]`` weight transposes. A callable is returned as it is.
    """
    if isinstance(initializer, str):
        try:
            return _INITIALIZERS[initializer]
        except KeyError:
            raise ValueError(
                f"{argument}: unknown initializer {initializer!r}; use one of "
                f"{sorted(_INITIALIZERS)} or a callable fn(tensor, generator)"
            ) from None
    if callable(initializer):
        return initializer
    raise TypeError(
        f"{argument}: initializer must be a name or a callable fn(tensor, generator), got "
        f"{type(initializer).__name__}"
    )


class Cross(nn.Module):
    """One DCN cross layer: ``(x0 [..., d], x [..., d]) -> [..., d]``.

    TFRS's ``tfrs.layers.dcn.Cross`` (``tfrs.layers.feature_interaction.Cross``)::

        y = act(W x + b)            # act = preactivation, W = V U when projection_dim is given
        y = y + diag_scale * x      # only when diag_scale != 0
        return x0 * y + x

    ``x`` defaults to ``x0`` (the first layer of a stack). As in TFRS, ``preactivation`` is the
    activation of the dense layer, applied to ``W x + b``, before the multiplication by ``x0``;
    the low-rank ``U`` has no bias, ``V`` carries the bias and the activation.

    Parameters (torch ``[out, in]`` layout, the transpose of the Keras kernels): full rank
    ``weight`` ``[d, d]``; low rank ``u_weight`` ``[projection_dim, d]`` and ``v_weight``
    ``[d, projection_dim]`` (so ``W = v_weight @ u_weight``); ``bias`` ``[d]`` when ``use_bias``.
    ``torchrs_fn.init`` initialises every kernel with ``kernel_initializer`` (each separately, as
    TFRS clones the initialiser per ``Dense``) and the bias with ``bias_initializer``.

    Unlike Keras, the input width ``in_features`` is given up front (torch needs it to create
    the weights); inputs of another width raise a ``ValueError``.

    Args:
        in_features: ``d``, the width of ``x0`` and ``x``.
        projection_dim: rank of the low-rank ``W = V U``; ``None`` (default) for a full ``W``.
        diag_scale: non-negative; adds ``diag_scale * I`` to ``W``.
        use_bias: add the bias ``b``.
        preactivation: activation of ``W x + b`` (a Keras name, a callable or ``None``).
        kernel_initializer: Keras name or ``fn(tensor, generator)``; default
            ``"truncated_normal"`` as in TFRS (Keras ``TruncatedNormal()``: stddev 0.05).
        bias_initializer: Keras name or ``fn(tensor, generator)``; default ``"zeros"``.
    """

    def __init__(
        self,
        in_features: int,
        *,
        projection_dim: int | None = None,
        diag_scale: float = 0.0,
        use_bias: bool = True,
        preactivation: Activation = None,
        kernel_initializer: Initializer = "truncated_normal",
        bias_initializer: Initializer = "zeros",
    ) -> None:
        super().__init__()
        if int(in_features) < 1:
            raise ValueError(f"Cross: in_features must be positive, got {in_features}")
        if projection_dim is not None and int(projection_dim) < 1:
            raise ValueError(
                f"Cross: projection_dim must be positive or None, got {projection_dim}"
            )
        if diag_scale is None or diag_scale < 0:
            raise ValueError(f"Cross: diag_scale must be non-negative, got {diag_scale}")
        self.in_features = int(in_features)
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.diag_scale = float(diag_scale)
        self.use_bias = bool(use_bias)
        self.preactivation = _resolve_activation(preactivation, "Cross preactivation")
        self.kernel_initializer = keras_initializer(kernel_initializer, "Cross kernel_initializer")
        self.bias_initializer = keras_initializer(bias_initializer, "Cross bias_initializer")
        d = self.in_features
        if self.projection_dim is None:
            self.weight = nn.Parameter(torch.empty(d, d))
        else:
            self.u_weight = nn.Parameter(torch.empty(self.projection_dim, d))
            self.v_weight = nn.Parameter(torch.empty(d, self.projection_dim))
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(d))
        else:
            self.register_parameter("bias", None)

    def init_parameters(self, generator: torch.Generator) -> None:
        """Keras initialisation: each kernel from ``kernel_initializer``, bias from
        ``bias_initializer`` (called by ``torchrs_fn.init``)."""
        if self.projection_dim is None:
            self.kernel_initializer(self.weight, generator)
        else:
            self.kernel_initializer(self.u_weight, generator)
            self.kernel_initializer(self.v_weight, generator)
        if self.bias is not None:
            self.bias_initializer(self.bias, generator)

    def forward(self, x0: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``x0`` ``[..., d]`` and ``x`` ``[..., d]`` (default ``x0``) -> ``[..., d]``."""
        name = f"Cross({self.in_features})"
        _check_width(x0, self.in_features, name, "x0")
        if x is None:
            x = x0
        else:
            _check_width(x, self.in_features, name, "x")
        if self.projection_dim is None:
            prod = F.linear(x, self.weight, self.bias)
        else:
            prod = F.linear(F.linear(x, self.u_weight), self.v_weight, self.bias)
        if self.preactivation is not None:
            prod = self.preactivation(prod)
        if self.diag_scale:
            prod = prod + self.diag_scale * x
        return x0 * prod + x

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, projection_dim={self.projection_dim}, "
            f"diag_scale={self.diag_scale}, use_bias={self.use_bias}"
        )


class MultiLayerDCN(nn.Module):
    """A stack of cross layers: ``x0 [..., d] -> x_L [..., d]``, ``x_{l+1} = Cross_l(x0, x_l)``.

    TFRS's ``tfrs.layers.feature_interaction.MultiLayerDCN(projection_dim, num_layers)`` computes
    ``x_{l+1} = x0 * (V_l U_l x_l + b_l) + x_l`` for ``num_layers`` layers (default 3), always low
    rank (``projection_dim`` default 1). Here each layer is a ``Cross`` with the given options,
    so ``MultiLayerDCN(d, L, projection_dim=r)`` is that layer exactly, and the default
    ``projection_dim=None`` gives full-rank layers instead (DCN-v2 as in TFRS's DCN tutorial);
    ``diag_scale`` and ``preactivation``, which TFRS's ``MultiLayerDCN`` lacks, are passed to each
    ``Cross``. Parameters: ``{"layers": {"0": <Cross params>, ...}}``.

    Args:
        in_features: ``d``.
        num_layers: the number of cross layers ``L`` (default 3, as in TFRS).
        projection_dim: as for ``Cross``, shared by every layer; so are ``diag_scale``,
            ``use_bias``, ``preactivation``, ``kernel_initializer`` and ``bias_initializer``.
    """

    def __init__(
        self,
        in_features: int,
        num_layers: int = 3,
        *,
        projection_dim: int | None = None,
        diag_scale: float = 0.0,
        use_bias: bool = True,
        preactivation: Activation = None,
        kernel_initializer: Initializer = "truncated_normal",
        bias_initializer: Initializer = "zeros",
    ) -> None:
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"MultiLayerDCN: num_layers must be positive, got {num_layers}")
        self.in_features = int(in_features)
        self.num_layers = int(num_layers)
        self.layers = nn.ModuleList(
            Cross(
                in_features,
                projection_dim=projection_dim,
                diag_scale=diag_scale,
                use_bias=use_bias,
                preactivation=preactivation,
                kernel_initializer=kernel_initializer,
                bias_initializer=bias_initializer,
            )
            for _ in range(self.num_layers)
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``x0`` ``[..., d]`` -> ``[..., d]``."""
        _check_width(x0, self.in_features, f"MultiLayerDCN({self.in_features})", "x0")
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_layers={self.num_layers}"
