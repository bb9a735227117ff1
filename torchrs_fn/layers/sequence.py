"""Sequence encoders: a user's last ``n`` item ids ``[B, n]`` -> one query vector ``[B, D]``.

The query towers of sequential retrieval (TFRS's "Recommending movies: sequential retrieval"
tutorial, SASRec-style models). Both take the padded id matrices that
``torchrs_fn.data.sequence_examples`` produces: each row holds the items oldest first, padded on
the *right* with ``pad_id`` (0 by default) to length ``n``, with the number of real items in its
``context_length`` column.

Which positions are real, in order of precedence (as in ``BagEmbedding``):

* ``mask`` (``[B, n]`` bool, True = real) when given;
* else ``lengths`` (``[B]`` ints): the first ``lengths[b]`` positions of row b (right padding, the
  layout of ``sequence_examples``; pass its ``context_length`` column). Use it when the pad id
  can also be a real id (e.g. the OOV id 0 of a ``StringLookup``);
* else every position whose id is not ``padding_id`` (default 0: Keras's
  ``Embedding(mask_zero=True)``, which the TFRS tutorial uses);
* else (``padding_id=None``) every position.

Padded positions may hold any integer (they are never looked up); real ids must lie in
``[0, num_items)``. A row with no real item gives zeros. Neither encoder has dropout (there is no
hidden random state in this library; apply ``torchrs_fn.random.dropout`` around it if needed).
Both have no data-dependent Python branches, so they run under ``torch.func.grad``, ``vmap`` and
``torch.compile`` (the eager range checks are skipped there, as in ``Embedding``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._transforms import host_checks_allowed
from .embedding import Embedding

__all__ = ["GRUEncoder", "TransformerEncoder"]

Pooling = Literal["last", "mean"]


def _glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int, g: torch.Generator) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    weight.uniform_(-bound, bound, generator=g)


def _valid_positions(
    name: str,
    ids: torch.Tensor,
    lengths: torch.Tensor | None,
    mask: torch.Tensor | None,
    padding_id: int | None,
) -> torch.Tensor | None:
    """``[B, n]`` bool, True at the real positions (``None``: all are real). Checks the inputs."""
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name}: ids must be an integer tensor [B, n], got {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"{name}: ids must be [B, n] (batch, positions), got {tuple(ids.shape)}")
    if mask is not None and lengths is not None:
        raise ValueError(f"{name}: give mask or lengths, not both")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"{name}: mask must be a bool tensor, got {mask.dtype}")
        if mask.shape != ids.shape:
            raise ValueError(f"{name}: mask has shape {tuple(mask.shape)}, ids {tuple(ids.shape)}")
        return mask
    if lengths is not None:
        if lengths.is_floating_point() or lengths.dtype == torch.bool or lengths.is_complex():
            raise TypeError(f"{name}: lengths must be an integer tensor [B], got {lengths.dtype}")
        if lengths.shape != ids.shape[:1]:
            raise ValueError(
                f"{name}: lengths must have shape [{ids.shape[0]}] (one per row of ids), got "
                f"{tuple(lengths.shape)}"
            )
        n = ids.shape[1]
        if lengths.numel() and host_checks_allowed(lengths):
            lo, hi = int(lengths.min()), int(lengths.max())
            if lo < 0 or hi > n:
                raise ValueError(
                    f"{name}: lengths must lie in [0, {n}] (the ids have {n} positions), got "
                    f"values in [{lo}, {hi}]"
                )
        return torch.arange(n, device=ids.device) < lengths[:, None]
    if padding_id is not None:
        return ids != padding_id
    return None


def _safe_ids(ids: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Padded positions read row 0 (never used), so any filler id is fine there."""
    return ids if valid is None else torch.where(valid, ids, torch.zeros_like(ids))


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")


class GRUEncoder(nn.Module):
    """Item embeddings, then a GRU: ``[B, n]`` item ids -> the last real step's state ``[B, H]``.

    TFRS's sequential-retrieval query tower,
    ``Sequential([Embedding(num_items, dim, mask_zero=True), GRU(hidden)])``: Keras's ``GRU``
    with a mask keeps its state unchanged over masked steps and returns the state after the last
    real step, and so does this. With right padding (``data.sequence_examples``) that is the
    state at position ``lengths[b] - 1``; with left padding it is the GRU run over the real items
    only (the initial zero state carried through the padding); a masked position in the middle is
    skipped. A row with no real item gives the initial state, zeros.

    The cell is Keras's GRU (``reset_after=True``, the TF2 default), which is also torch's
    ``nn.GRU`` / ``nn.GRUCell``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        m = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * m + z * h

    Parameters (named as ``nn.GRUCell``'s, so its ``load_state_dict`` takes them; torch's gate
    order ``r, z, n`` in the ``3H`` rows): ``embedding.weight [num_items, dim]``,
    ``weight_ih [3H, dim]``, ``weight_hh [3H, H]``, ``bias_ih [3H]``, ``bias_hh [3H]``.
    ``torchrs_fn.init`` gives Keras's defaults: embedding ``uniform(-0.05, 0.05)``, input kernel
    glorot-uniform (over Keras's ``[dim, 3H]`` kernel), recurrent kernel orthogonal, biases zero
    (torch's own ``nn.GRU`` init is ``uniform(±1/sqrt(H))`` instead).

    The steps run as a Python loop over the ``n`` positions (unrolled by ``torch.compile``), with
    the input projections of all steps computed at once; it is meant for the short contexts of
    sequential retrieval (tens of items), and composes with ``grad`` / ``vmap`` / ``compile``
    where torch's fused GRU kernel does not.

    Args:
        num_items: rows of the item table (ids in ``[0, num_items)``; with ``padding_id=0`` row 0
            is never used, as in Keras).
        dim: the item embedding size.
        hidden: ``H``, the GRU's units and the output width (default ``dim``, as in the tutorial,
            ``GRU(32)`` after ``Embedding(..., 32)``).
        padding_id: the id that marks padding when neither ``mask`` nor ``lengths`` is passed
            (default 0, Keras ``mask_zero=True``); ``None``: no id is padding.

    Attributes:
        output_dim: ``H``.
    """

    def __init__(
        self, num_items: int, dim: int, hidden: int | None = None, *, padding_id: int | None = 0
    ) -> None:
        super().__init__()
        hidden = dim if hidden is None else hidden
        _check_positive(num_items=num_items, dim=dim, hidden=hidden)
        if padding_id is not None and (
            isinstance(padding_id, bool) or not isinstance(padding_id, int)
        ):
            raise TypeError(f"GRUEncoder: padding_id must be an int or None, got {padding_id!r}")
        self.num_items, self.dim, self.hidden = num_items, dim, hidden
        self.output_dim = hidden
        self.padding_id = padding_id
        self.embedding = Embedding(num_items, dim)
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden, dim))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden))

    def init_parameters(self, generator: torch.Generator) -> None:
        """Keras ``GRU`` defaults: glorot-uniform kernel, orthogonal recurrent kernel, zero biases."""
        h, d = self.hidden, self.dim
        _glorot_uniform_(self.weight_ih, d, 3 * h, generator)
        # Keras's Orthogonal on the [H, 3H] recurrent kernel: QR of a [3H, H] normal matrix, signs
        # fixed by diag(R), transposed. Our weight_hh is that kernel's transpose, [3H, H].
        a = torch.randn(3 * h, h, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        self.weight_hh.copy_(q.to(self.weight_hh.dtype))
        self.bias_ih.zero_()
        self.bias_hh.zero_()

    def forward(
        self,
        ids: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The state after each row's last real item.

        Args:
            ids: ``[B, n]`` integer item ids, oldest first.
            lengths: optional ``[B]`` ints: row b's first ``lengths[b]`` positions are real.
            mask: optional ``[B, n]`` bool, True at the real positions.

        Returns:
            ``[B, H]`` in the parameters' dtype.
        """
        name = f"GRUEncoder({self.num_items}, {self.dim}, hidden={self.hidden})"
        valid = _valid_positions(name, ids, lengths, mask, self.padding_id)
        x = self.embedding(_safe_ids(ids, valid))  # [B, n, dim]
        gates_x = F.linear(x, self.weight_ih, self.bias_ih)  # [B, n, 3H], all steps at once
        h = x.new_zeros(ids.shape[0], self.hidden)
        for t in range(ids.shape[1]):
            gates_h = F.linear(h, self.weight_hh, self.bias_hh)
            xr, xz, xn = gates_x[:, t].chunk(3, dim=-1)
            hr, hz, hn = gates_h.chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            m = torch.tanh(xn + r * hn)
            new = m + z * (h - m)
            h = new if valid is None else torch.where(valid[:, t, None], new, h)
        return h

    def extra_repr(self) -> str:
        return f"{self.num_items}, {self.dim}, hidden={self.hidden}, padding_id={self.padding_id}"


class _EncoderBlock(nn.Module):
    """One post-norm transformer encoder layer (torch's ``nn.TransformerEncoderLayer`` with
    ``norm_first=False``, ReLU and no dropout), written out so it composes with ``torch.func``."""

    def __init__(self, dim: int, num_heads: int, feedforward_dim: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.linear1 = nn.Linear(dim, feedforward_dim)
        self.linear2 = nn.Linear(feedforward_dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, n, D] -> [B, heads, n, D / heads]
            return t.reshape(b, n, heads, d // heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)  # [B, heads, n, n]
        if valid is not None:
            # The lowest finite value, not -inf: padded keys get weight exp(min - max) = 0 exactly,
            # and a row with no real key gets a finite (uniform) softmax instead of NaN.
            floor = torch.finfo(scores.dtype).min
            scores = torch.where(valid[:, None, None, :], scores, floor)
        attended = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        x = self.norm1(x + self.output(attended))
        return self.norm2(x + self.linear2(torch.relu(self.linear1(x))))


class TransformerEncoder(nn.Module):
    """Item + position embeddings, transformer layers, pooling: ``[B, n]`` ids -> ``[B, D]``.

    A SASRec-style query tower (TFRS has no such layer; Keras users write one from
    ``MultiHeadAttention`` or use ``keras_nlp.layers.TransformerEncoder``)::

        x = item_embedding(ids) + position_embedding(arange(n))     # [B, n, D]
        x = layer(x) for each of num_layers layers                  # key padding mask
        out = x at each row's last real position ("last") or the mean over real positions ("mean")

    Each layer is torch's ``nn.TransformerEncoderLayer(dim, num_heads, feedforward_dim,
    dropout=0, activation="relu", norm_first=False, batch_first=True)`` (post-norm, as are
    ``keras_nlp``'s ``TransformerEncoder`` and the original Transformer), written out with plain
    ops so that it runs under ``torch.func`` and ``torch.compile``: self-attention over all
    positions (bidirectional) in which padded positions are masked as keys, then a ReLU
    feed-forward block, each with a residual connection and ``LayerNorm``. Padded positions
    therefore never change the output, whatever ids they hold.

    Pooling (``pooling=``): ``"last"`` (default) takes the output at each row's last real
    position, the most recent item of a ``sequence_examples`` context, which is what a
    next-item query wants (SASRec's choice); ``"mean"`` averages the outputs over the real
    positions. A row with no real item gives zeros.

    Positions are absolute, counted from the start of the row, so with right padding
    (``sequence_examples``) position 0 is the oldest item in the window. ``n`` may be at most
    ``max_len``.

    Parameters: ``embedding.weight [num_items, D]``, ``position_embedding.weight [max_len, D]``
    (Keras ``uniform(-0.05, 0.05)``), and per layer ``layers.<i>.{query, key, value, output,
    linear1, linear2}`` (``nn.Linear``: glorot-uniform weight, zero bias, Keras ``Dense``
    defaults) and ``layers.<i>.{norm1, norm2}`` (``LayerNorm``: ones and zeros).

    Args:
        num_items: rows of the item table.
        dim: ``D``, the model width and the output width; divisible by ``num_heads``.
        num_heads: attention heads (default 2).
        num_layers: encoder layers (default 1).
        max_len: the longest sequence accepted (rows of the position table), e.g. the
            ``max_context_length`` of ``sequence_examples``.
        feedforward_dim: the hidden width of the feed-forward block (default ``4 * dim``).
        pooling: ``"last"`` or ``"mean"``.
        padding_id: the id that marks padding when neither ``mask`` nor ``lengths`` is passed
            (default 0); ``None``: no id is padding.
        layer_norm_eps: the ``LayerNorm`` epsilon (default 1e-5, torch's and ``keras_nlp``'s).

    Attributes:
        output_dim: ``D``.
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        num_heads: int = 2,
        num_layers: int = 1,
        *,
        max_len: int,
        feedforward_dim: int | None = None,
        pooling: Pooling = "last",
        padding_id: int | None = 0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        feedforward_dim = 4 * dim if feedforward_dim is None else feedforward_dim
        _check_positive(
            num_items=num_items,
            dim=dim,
            num_heads=num_heads,
            num_layers=num_layers,
            max_len=max_len,
            feedforward_dim=feedforward_dim,
        )
        if dim % num_heads:
            raise ValueError(
                f"TransformerEncoder: dim ({dim}) must be divisible by num_heads ({num_heads})"
            )
        if pooling not in ("last", "mean"):
            raise ValueError(
                f"TransformerEncoder: pooling must be 'last' or 'mean', got {pooling!r}"
            )
        if padding_id is not None and (
            isinstance(padding_id, bool) or not isinstance(padding_id, int)
        ):
            raise TypeError(
                f"TransformerEncoder: padding_id must be an int or None, got {padding_id!r}"
            )
        self.num_items, self.dim, self.max_len = num_items, dim, max_len
        self.num_heads, self.num_layers = num_heads, num_layers
        self.feedforward_dim = feedforward_dim
        self.pooling = pooling
        self.padding_id = padding_id
        self.output_dim = dim
        self.embedding = Embedding(num_items, dim)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.layers = nn.ModuleList(
            _EncoderBlock(dim, num_heads, feedforward_dim, float(layer_norm_eps))
            for _ in range(num_layers)
        )

    def forward(
        self,
        ids: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pooled encoding of each row.

        Args:
            ids: ``[B, n]`` integer item ids, oldest first, ``n <= max_len``.
            lengths: optional ``[B]`` ints: row b's first ``lengths[b]`` positions are real.
            mask: optional ``[B, n]`` bool, True at the real positions.

        Returns:
            ``[B, D]`` in the parameters' dtype.
        """
        name = f"TransformerEncoder({self.num_items}, {self.dim}, max_len={self.max_len})"
        valid = _valid_positions(name, ids, lengths, mask, self.padding_id)
        n = ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"{name}: ids have {n} positions, more than max_len={self.max_len}")
        x = self.embedding(_safe_ids(ids, valid)) + self.position_embedding.weight[:n]
        for layer in self.layers:
            x = layer(x, valid)
        if valid is None:
            return x[:, -1] if self.pooling == "last" else x.mean(dim=1)
        any_valid = valid.any(dim=1, keepdim=True)  # [B, 1]
        if self.pooling == "mean":
            w = valid.to(x.dtype)
            total = (w.unsqueeze(1) @ x).squeeze(1)  # [B, D]
            count = w.sum(dim=1, keepdim=True)
            return total / torch.where(any_valid, count, torch.ones_like(count))
        positions = torch.arange(n, device=ids.device).expand_as(valid)
        last = torch.where(valid, positions, 0).amax(dim=1)  # [B]; 0 for a row with none
        out = torch.gather(x, 1, last[:, None, None].expand(-1, 1, x.shape[-1])).squeeze(1)
        return torch.where(any_valid, out, torch.zeros_like(out))

    def extra_repr(self) -> str:
        return (
            f"{self.num_items}, {self.dim}, num_heads={self.num_heads}, num_layers="
            f"{self.num_layers}, max_len={self.max_len}, pooling={self.pooling!r}, "
            f"padding_id={self.padding_id}"
        )
