"""``DLRM``: the DLRM / DCN ranking model of TFRS's ``tfrs.experimental.models.Ranking``.

Dense features go through a bottom MLP, categorical features through one embedding table each,
and a feature interaction (DLRM's dot products, or DCN-v2 cross layers) combines them before a
top MLP that outputs logits. Train it with ``torchrs_fn.init`` / ``torchrs_fn.apply`` and a
binary cross-entropy on logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .._transforms import host_checks_allowed
from ..layers.dcn import Cross, MultiLayerDCN
from ..layers.embedding import Embedding, embedding_lookup
from ..layers.interaction import DotInteraction
from ..layers.mlp import MLP

__all__ = ["DLRM"]


class DLRM(nn.Module):
    """A DLRM / DCN ranking model: ``(dense [..., num_dense], sparse [..., F]) -> logits [...]``.

    TFRS's ``tfrs.experimental.models.Ranking`` (and ``RankingModel``), step by step::

        e_i = table_i(sparse[..., i])                          # [..., D] per categorical feature
        b   = bottom(dense)                                    # MLP, relu on every layer
        z   = interaction([e_1, ..., e_F, b])                  # embeddings first, dense last
        h   = concat([b, z]) if concat_dense else z
        logits = top(h)                                        # MLP, no final activation

    **Logits, not probabilities.** TFRS's default top stack ends in a sigmoid and its task uses
    ``BinaryCrossentropy`` on probabilities; here the last layer is linear and the sigmoid is
    left to the loss (binary cross-entropy with logits) and to the metrics, which is the same
    model and numerically safer.

    Interactions (``interaction=``):

    * ``"dot"`` (default, DLRM): ``DotInteraction`` over the ``F + 1`` vectors stacked
      ``[..., F + 1, D]``, giving ``(F + 1) F / 2`` products (``self_interaction`` adds the
      diagonal). The bottom MLP must end in ``embedding_dim`` units.
    * ``"cross"`` (DCN-v2): the vectors concatenated, ``[..., F D + bottom_units[-1]]`` (TFRS's
      ``Sequential([Concatenate(), Cross()])``), through ``MultiLayerDCN(num_cross_layers,
      projection_dim=...)``.
    * a ``DotInteraction``, ``Cross`` or ``MultiLayerDCN`` instance: used as above (its width is
      checked); any other module is called with the list ``[e_1, ..., e_F, b]`` of ``[..., ·]``
      tensors, as TFRS calls its ``feature_interaction``, and must return ``[...,
      interaction_out_features]``.

    Embedding tables: one ``torchrs_fn.layers.Embedding(vocab_size, embedding_dim)`` per
    feature (Keras ``uniform(-0.05, 0.05)`` through ``init``), in ``params["embeddings"][name]
    ["weight"]``. Features are named ``"0"``, ``"1"``, ... when ``vocab_sizes`` is a list, and
    ordered by sorted name when it is a dict, as ``tf.nest.flatten`` orders TFRS's embedding
    dict. (One concatenated table with offset ids was measured and was slower on CPU: its one
    large gradient is reallocated, and page-faulted, every step.) An id outside its feature's
    ``[0, vocab_size)`` raises an ``IndexError`` naming the feature in eager mode; compiled, the
    lookup's own bounds assertion fires.

    Differences from TFRS's defaults: ``bottom_units`` defaults to ``(512, 256, embedding_dim)``
    (TFRS: ``[256, 64, 16]``) and the top stack ends without a sigmoid (above). TFRS's
    ``tf.squeeze`` of ``[B, 1, D]`` embeddings is not needed: ids are ``[..., F]`` (or a dict of
    ``[...]`` columns).

    Args:
        num_dense: width of the dense features.
        vocab_sizes: rows of each categorical feature's table: a list, or a dict name -> size.
        embedding_dim: ``D``.
        bottom_units: the bottom MLP's layers (relu on all, TFRS ``final_activation="relu"``).
        top_units: the top MLP's layers (relu on all but the last, which is linear).
        interaction: ``"dot"``, ``"cross"`` or a module (above).
        self_interaction: for ``"dot"``: keep the dot product of each vector with itself.
        num_cross_layers: for ``"cross"``: the number of cross layers (default 3, TFRS's
            ``MultiLayerDCN`` default).
        projection_dim: for ``"cross"``: low-rank cross layers of this rank (default full rank).
        concat_dense: concatenate the bottom output to the interaction output (TFRS
            ``concat_dense``, default True).
        interaction_out_features: the output width of a custom interaction module.
    """

    def __init__(
        self,
        num_dense: int,
        vocab_sizes: Sequence[int] | Mapping[str, int],
        embedding_dim: int = 16,
        *,
        bottom_units: Sequence[int] | None = None,
        top_units: Sequence[int] = (512, 256, 1),
        interaction: str | nn.Module = "dot",
        self_interaction: bool = False,
        num_cross_layers: int = 3,
        projection_dim: int | None = None,
        concat_dense: bool = True,
        interaction_out_features: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(vocab_sizes, Mapping):
            names = sorted(vocab_sizes)
            if any(not isinstance(n, str) or not n or "." in n for n in names):
                raise ValueError(
                    f"DLRM: vocab_sizes keys must be non-empty strings without '.', got {names}"
                )
            sizes = [int(vocab_sizes[n]) for n in names]
            self.sparse_as_dict = True
        else:
            sizes = [int(v) for v in vocab_sizes]
            names = [str(i) for i in range(len(sizes))]
            self.sparse_as_dict = False
        if not sizes:
            raise ValueError("DLRM: vocab_sizes must name at least one categorical feature")
        bad = [n for n, v in zip(names, sizes) if v < 1]
        if bad:
            raise ValueError(f"DLRM: vocab sizes must be positive; features {bad} are not")
        if int(num_dense) < 1 or int(embedding_dim) < 1:
            raise ValueError(
                f"DLRM: num_dense and embedding_dim must be positive, got num_dense={num_dense}, "
                f"embedding_dim={embedding_dim}"
            )
        self.num_dense = int(num_dense)
        self.embedding_dim = d = int(embedding_dim)
        self.feature_names = tuple(names)
        self.vocab_sizes = tuple(sizes)
        self.concat_dense = bool(concat_dense)
        bottom_units = (512, 256, d) if bottom_units is None else tuple(bottom_units)

        self.embeddings = nn.ModuleDict({n: Embedding(v, d) for n, v in zip(names, sizes)})
        self.bottom = MLP(self.num_dense, bottom_units, final_activation="relu")
        num_features = len(sizes) + 1
        b = self.bottom.out_features

        if isinstance(interaction, str):
            if interaction == "dot":
                interaction = DotInteraction(self_interaction=self_interaction)
            elif interaction == "cross":
                interaction = MultiLayerDCN(
                    len(sizes) * d + b, num_cross_layers, projection_dim=projection_dim
                )
            else:
                raise ValueError(
                    f"DLRM: interaction must be 'dot', 'cross' or a module, got {interaction!r}"
                )
        if not isinstance(interaction, nn.Module):
            raise TypeError(
                "DLRM: interaction must be 'dot', 'cross' or an nn.Module, got "
                f"{type(interaction).__name__}"
            )
        if isinstance(interaction, DotInteraction):
            if b != d:
                raise ValueError(
                    f"DLRM: the dot interaction needs bottom_units[-1] == embedding_dim ({d}), "
                    f"got bottom_units={list(bottom_units)}"
                )
            self.interaction_kind = "dot"
            z = interaction.out_features(num_features)
        elif isinstance(interaction, (Cross, MultiLayerDCN)):
            if interaction.in_features != len(sizes) * d + b:
                raise ValueError(
                    f"DLRM: a cross interaction here takes {len(sizes)} * {d} + {b} = "
                    f"{len(sizes) * d + b} features, got one with in_features="
                    f"{interaction.in_features}"
                )
            self.interaction_kind = "cross"
            z = interaction.in_features
        else:
            if interaction_out_features is None or int(interaction_out_features) < 1:
                raise ValueError(
                    "DLRM: a custom interaction module needs interaction_out_features (its "
                    f"output width), got {interaction_out_features!r}"
                )
            self.interaction_kind = "custom"
            z = int(interaction_out_features)
        self.interaction = interaction
        self.top = MLP(b + z if self.concat_dense else z, top_units)

    def _ids(self, sparse: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The categorical ids as one ``[..., F]`` integer tensor, checked."""
        f = len(self.feature_names)
        if self.sparse_as_dict:
            if not isinstance(sparse, Mapping):
                raise TypeError(
                    "DLRM: vocab_sizes is a dict, so sparse must be a dict of id columns "
                    f"{list(self.feature_names)}, got {type(sparse).__name__}"
                )
            missing = [n for n in self.feature_names if n not in sparse]
            if missing:
                raise KeyError(f"DLRM: sparse lacks the features {missing}")
            columns = [sparse[n] for n in self.feature_names]
            for n, c in zip(self.feature_names, columns):
                if c.shape != columns[0].shape:
                    raise ValueError(
                        f"DLRM: sparse[{n!r}] has shape {tuple(c.shape)}, sparse"
                        f"[{self.feature_names[0]!r}] {tuple(columns[0].shape)}"
                    )
            ids = torch.stack(columns, dim=-1)
        else:
            if not isinstance(sparse, torch.Tensor):
                raise TypeError(
                    f"DLRM: sparse must be a [..., {f}] integer tensor, got {type(sparse).__name__}"
                )
            if sparse.ndim < 1 or sparse.shape[-1] != f:
                raise ValueError(
                    f"DLRM: expected sparse ids of shape [..., {f}], got {tuple(sparse.shape)}"
                )
            ids = sparse
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
            raise TypeError(f"DLRM: sparse ids must be integers, got {ids.dtype}")
        # Eager only (as in layers.Embedding): compiled, each lookup asserts its own bounds.
        if ids.numel() and host_checks_allowed(ids):
            vocab = torch.tensor(self.vocab_sizes, device=ids.device)
            bad = ((ids < 0) | (ids >= vocab)).reshape(-1, f).any(0)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                col = ids[..., i]
                raise IndexError(
                    f"DLRM: ids of feature {self.feature_names[i]!r} must lie in "
                    f"[0, {self.vocab_sizes[i]}), got values in [{int(col.min())}, "
                    f"{int(col.max())}]"
                )
        return ids

    def forward(
        self, dense: torch.Tensor, sparse: torch.Tensor | Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Logits of each example.

        Args:
            dense: ``[..., num_dense]`` floating dense features.
            sparse: ``[..., F]`` integer ids, column ``i`` for feature ``i`` (list
                ``vocab_sizes``), or a dict name -> ``[...]`` ids (dict ``vocab_sizes``).

        Returns:
            ``[...]`` logits (``[..., top_units[-1]]`` when the top MLP ends in more than one
            unit). Apply a sigmoid for click probabilities.
        """
        if not isinstance(dense, torch.Tensor) or not dense.is_floating_point():
            raise TypeError(
                "DLRM: dense must be a floating-point tensor, got "
                f"{getattr(dense, 'dtype', type(dense).__name__)}"
            )
        if dense.ndim < 1 or dense.shape[-1] != self.num_dense:
            raise ValueError(
                f"DLRM: expected dense features of shape [..., {self.num_dense}], got "
                f"{tuple(dense.shape)}"
            )
        ids = self._ids(sparse)
        if ids.shape[:-1] != dense.shape[:-1]:
            raise ValueError(
                f"DLRM: dense {tuple(dense.shape)} and sparse ids {tuple(ids.shape)} disagree on "
                "the batch shape"
            )
        bottom = self.bottom(dense)
        embedded = [
            embedding_lookup(table.weight, ids[..., i])
            for i, table in enumerate(self.embeddings.values())
        ]
        if self.interaction_kind == "dot":
            x = torch.stack([*embedded, bottom], dim=-2)
            z = self.interaction(x)
        elif self.interaction_kind == "cross":
            z = self.interaction(torch.cat([*embedded, bottom], dim=-1))
        else:
            z = self.interaction([*embedded, bottom])
        logits = self.top(torch.cat([bottom, z], dim=-1) if self.concat_dense else z)
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits

    def extra_repr(self) -> str:
        return (
            f"num_dense={self.num_dense}, features={len(self.feature_names)}, "
            f"embedding_dim={self.embedding_dim}, interaction={self.interaction_kind!r}"
        )
