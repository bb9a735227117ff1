"""Towers for retrieval: ``FeatureTower``, ``TwoTowerModel`` and ``candidate_embeddings_for_table``.

The TFRS tutorials write each tower by hand (``UserModel`` / ``QueryModel`` / ``MovieModel``: a
``call`` that embeds each feature, concatenates the embeddings, and maybe runs a ``Dense`` stack),
and a ``tfrs.Model`` whose ``compute_loss`` runs the retrieval task on the two towers' outputs.
``FeatureTower`` is that hand-written tower declared by a dict of features, and
``TwoTowerModel`` is that model. Both are ordinary module definitions: create their parameters
with ``torchrs_fn.init`` and run them with ``torchrs_fn.apply``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from .. import tree
from ..layers.embedding import BagEmbedding
from ..layers.mlp import MLP, Activation
from ..layers.sequence import GRUEncoder, TransformerEncoder
from ..tasks.retrieval import Retrieval
from .base import Model, Params, apply

__all__ = ["FeatureTower", "Numeric", "TwoTowerModel", "candidate_embeddings_for_table"]


@dataclass(frozen=True)
class Numeric:
    """A numeric feature: ``[B]`` (``width=1``) or ``[B, width]`` numbers, passed through.

    Optionally standardised inside the tower, ``(x - mean) / std``, with constants given here
    (scalars, or ``width`` values for per-position statistics). They are not parameters: they
    are not trained and are not in the params tree. To reuse a fitted ``data.Normalization``
    (Keras ``Normalization``): ``Numeric(mean=norm.mean, std=np.maximum(np.sqrt(norm.variance),
    1e-7))``, Keras's formula. Leave both ``None`` when the column is normalised on the data side
    already (``data.Normalization`` applied to the Arrow column, the usual place).

    Any real dtype is accepted (integer timestamps, bools, floats); the arithmetic runs in float64
    for int64 / float64 input (no precision lost on timestamps) and float32 otherwise, and the
    result is cast to the tower's dtype (that of its parameters).

    Args:
        width: values per example, ``>= 1``.
        mean: subtracted first; a float or ``width`` floats. ``None``: 0.
        std: divided by next; a positive float or ``width`` of them. ``None``: 1.
    """

    width: int = 1
    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"Numeric: width must be a positive int, got {self.width!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=np.float64)
            if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != self.width):
                raise ValueError(
                    f"Numeric: {name} must be a float or {self.width} floats (width), got shape "
                    f"{array.shape}"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"Numeric: {name} must be finite, got {array.tolist()}")
            if name == "std" and (array <= 0).any():
                raise ValueError(f"Numeric: std must be > 0, got {array.tolist()}")
            # A hashable, JSON-able form: a float or a tuple of floats.
            object.__setattr__(
                self, name, array.tolist() if array.ndim == 0 else tuple(array.tolist())
            )


FeatureSpec = nn.Module | Numeric | Literal["numeric"]
"""What ``FeatureTower`` does with one feature: embed it with a module, or pass numbers through."""

_ID_MODULES = (nn.Embedding,)  # layers.Embedding and layers.HashedEmbedding are nn.Embeddings
_LIST_MODULES = (BagEmbedding, GRUEncoder, TransformerEncoder)
_MASKED_MODULES = _LIST_MODULES  # modules that take mask= (derived from a lengths column)


def _module_width(name: str, module: nn.Module) -> int:
    if isinstance(module, (nn.Embedding, BagEmbedding)):
        return int(module.embedding_dim)
    width = getattr(module, "output_dim", None)
    if isinstance(width, int) and not isinstance(width, bool) and width >= 1:
        return width
    raise TypeError(
        f"FeatureTower: feature {name!r}: a module must be an embedding (nn.Embedding, "
        "layers.Embedding / HashedEmbedding / BagEmbedding), a sequence encoder, or any module "
        f"with an int attribute output_dim (its output width); {type(module).__name__} is none "
        "of these"
    )


def _describe(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})"


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


class FeatureTower(nn.Module):
    """Embeds a dict of features, concatenates them and runs an optional MLP: ``batch -> [B, D]``.

    The tower of the TFRS tutorials (``UserModel``, ``QueryModel``, ``MovieModel`` and their
    deep variants), declared instead of hand-written. Each entry of ``features`` names a column
    of the batch and says what to do with it:

    * ``layers.Embedding(vocab, dim)`` / ``layers.HashedEmbedding(num_bins, dim)`` (or any
      ``nn.Embedding``): integer ids ``[B]`` -> ``[B, dim]`` (Keras ``StringLookup`` +
      ``Embedding``, or ``Hashing`` + ``Embedding``, with the lookup done on the data side);
    * ``layers.BagEmbedding(vocab, dim, combiner)``: padded ids ``[B, L]`` -> ``[B, dim]``
      (a multi-valued feature: genres, a bag of words; Keras ``Embedding(mask_zero=True)`` +
      ``GlobalAveragePooling1D``);
    * ``layers.GRUEncoder`` / ``layers.TransformerEncoder``: padded item sequences ``[B, n]`` ->
      ``[B, output_dim]`` (the sequential-retrieval query tower);
    * any other module with an int ``output_dim`` attribute: called with the column, must
      return ``[B, output_dim]``;
    * ``Numeric(width, mean=, std=)`` or the string ``"numeric"`` (``Numeric()``): numbers
      ``[B]`` or ``[B, width]`` passed through, optionally standardised (see ``Numeric``).

    The pieces are concatenated in the order of ``features`` (as a TFRS ``call`` concatenates
    them in the order it lists them), then go through ``MLP(total_width, mlp, ...)`` when
    ``mlp`` is given (TFRS's deep towers: ``Dense`` layers with ReLU between them and a linear
    last layer, by default). One module may serve two features (a shared table): ``init`` then
    makes one parameter.

    ``lengths`` maps a list feature (bag or sequence) to the batch column holding its ``[B]``
    real lengths (e.g. ``{"context": "context_length"}`` for ``data.sequence_examples``): the
    first ``lengths[b]`` positions of row b are used, whatever the ids are, instead of masking
    id 0 (needed when 0 is also a real id, such as a lookup's OOV id).

    Parameters: ``{"features": {name: <the module's params>, ...}, "mlp": {...}}`` (no entry for
    numeric features, none for ``"mlp"`` without an MLP).

    Errors name the feature: a column missing from the batch (``KeyError``), float ids or
    non-numeric numbers (``TypeError``), a wrong rank or width, or batch sizes that differ
    between features (``ValueError``).

    Args:
        features: ``{column name: FeatureSpec}``, at least one; names must not contain ``"."``.
        mlp: the MLP's layer widths, or ``None`` for no MLP (the output is the concatenation).
        lengths: ``{list feature: lengths column}`` (see above).
        activation: the MLP's activation between layers (default ``"relu"``, as in TFRS).
        final_activation: the MLP's activation after its last layer (default ``None``).
        use_bias: whether the MLP's layers have biases.

    Attributes:
        output_dim: ``D``: ``mlp[-1]``, or the total width of the features without an MLP.
        feature_names: the features' column names, in order.
        input_dim: the width of the concatenation.
    """

    def __init__(
        self,
        features: Mapping[str, FeatureSpec],
        mlp: Sequence[int] | None = None,
        *,
        lengths: Mapping[str, str] | None = None,
        activation: Activation = "relu",
        final_activation: Activation = None,
        use_bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(features, Mapping) or not features:
            raise ValueError(
                "FeatureTower: features must be a non-empty dict {column name: spec}, got "
                f"{features!r}"
            )
        modules: dict[str, nn.Module] = {}
        numerics: dict[str, Numeric] = {}
        widths: dict[str, int] = {}
        for name, spec in features.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(
                    f"FeatureTower: feature names must be non-empty strings without '.', got "
                    f"{name!r}"
                )
            if isinstance(spec, str) and spec == "numeric":
                spec = Numeric()
            if isinstance(spec, Numeric):
                numerics[name] = spec
                widths[name] = spec.width
            elif isinstance(spec, nn.Module):
                modules[name] = spec
                widths[name] = _module_width(name, spec)
            else:
                raise TypeError(
                    f"FeatureTower: feature {name!r}: the spec must be an embedding module, a "
                    f"Numeric(...) or 'numeric', got {spec!r}"
                )
        lengths = dict(lengths or {})
        for name, column in lengths.items():
            if name not in modules or not isinstance(modules[name], _MASKED_MODULES):
                raise ValueError(
                    f"FeatureTower: lengths names {name!r}, which is not a list feature (a "
                    "BagEmbedding, GRUEncoder or TransformerEncoder feature)"
                )
            if not isinstance(column, str):
                raise TypeError(
                    f"FeatureTower: lengths[{name!r}] must be a column name, got {column!r}"
                )
        self.feature_names: tuple[str, ...] = tuple(features)
        self.numerics = numerics
        self.lengths = lengths
        self.widths = widths
        try:
            self.features = nn.ModuleDict(modules)
        except KeyError as e:  # a name that clashes with a ModuleDict attribute ("keys", ...)
            raise ValueError(f"FeatureTower: unusable feature name: {e}") from None
        self.input_dim = sum(widths.values())
        self.mlp = (
            None
            if mlp is None
            else MLP(
                self.input_dim,
                mlp,
                activation=activation,
                final_activation=final_activation,
                use_bias=use_bias,
            )
        )
        self.output_dim = self.input_dim if self.mlp is None else self.mlp.out_features

    def _column(self, batch: Mapping[str, torch.Tensor], name: str, what: str) -> torch.Tensor:
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"FeatureTower: batch must be a dict of tensors, got {type(batch).__name__}"
            )
        if name not in batch:
            raise KeyError(
                f"FeatureTower: the batch has no column {name!r} ({what}); it has {sorted(batch)}"
            )
        value = batch[name]
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"FeatureTower: batch[{name!r}] must be a tensor, got {type(value).__name__}"
            )
        return value

    def _embed(self, name: str, module: nn.Module, x: torch.Tensor, batch: Mapping) -> torch.Tensor:
        label = f"FeatureTower: feature {name!r} ({_describe(module)})"
        if isinstance(module, _ID_MODULES + _LIST_MODULES) and not _is_integer(x):
            raise TypeError(f"{label} needs integer ids, got {x.dtype}")
        if isinstance(module, _ID_MODULES) and x.ndim != 1:
            raise ValueError(f"{label} takes one id per example, [B], got shape {tuple(x.shape)}")
        if isinstance(module, _LIST_MODULES) and x.ndim != 2:
            raise ValueError(
                f"{label} takes padded ids [B, L], got shape {tuple(x.shape)}"
                + (" (one id per example: use an Embedding)" if x.ndim == 1 else "")
            )
        if name in self.lengths:
            column = self.lengths[name]
            n = self._column(batch, column, f"the lengths of {name!r}")
            if not _is_integer(n) or n.shape != x.shape[:1]:
                raise ValueError(
                    f"FeatureTower: lengths column {column!r} of feature {name!r} must be [B] "
                    f"integers with B = {x.shape[0]}, got {n.dtype} of shape {tuple(n.shape)}"
                )
            mask = torch.arange(x.shape[1], device=x.device) < n[:, None]
            out = module(x, mask=mask)
        else:
            out = module(x)
        width = self.widths[name]
        if out.ndim != 2 or out.shape != (x.shape[0], width):
            raise ValueError(
                f"{label} returned shape {tuple(out.shape)} for input {tuple(x.shape)}; the tower "
                f"needs [B, {width}] (B = {x.shape[0]})"
            )
        return out

    def _numeric(self, name: str, spec: Numeric, x: torch.Tensor, dtype: torch.dtype | None):
        if x.is_complex() or not (x.is_floating_point() or _is_integer(x) or x.dtype == torch.bool):
            raise TypeError(f"FeatureTower: numeric feature {name!r} must be real, got {x.dtype}")
        if x.ndim == 1 and spec.width == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != spec.width:
            raise ValueError(
                f"FeatureTower: numeric feature {name!r} must be [B] or [B, 1] (width 1) / "
                f"[B, {spec.width}] (width {spec.width}), got shape {tuple(x.shape)}"
            )
        compute = torch.float64 if x.dtype in (torch.int64, torch.float64) else torch.float32
        y = x.to(compute)
        if spec.mean is not None:
            y = y - torch.tensor(spec.mean, dtype=compute, device=x.device)
        if spec.std is not None:
            y = y / torch.tensor(spec.std, dtype=compute, device=x.device)
        return y.to(dtype or torch.float32)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{column: tensor}`` (extra columns are ignored) -> ``[B, output_dim]``."""
        parts: dict[str, torch.Tensor] = {}
        for name, module in self.features.items():
            x = self._column(batch, name, f"feature of {_describe(module)}")
            parts[name] = self._embed(name, module, x, batch)
        dtype = next(iter(parts.values())).dtype if parts else None
        if dtype is None and self.mlp is not None:
            dtype = self.mlp.layers[0].weight.dtype
        for name, spec in self.numerics.items():
            x = self._column(batch, name, "numeric feature")
            parts[name] = self._numeric(name, spec, x, dtype)
        sizes = {name: p.shape[0] for name, p in parts.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"FeatureTower: the features' batch sizes differ: {sizes}")
        out = torch.cat([parts[name] for name in self.feature_names], dim=-1)
        return out if self.mlp is None else self.mlp(out)

    def extra_repr(self) -> str:
        numeric = ", ".join(f"{n}: {s}" for n, s in self.numerics.items())
        return f"output_dim={self.output_dim}" + (f", numeric={{{numeric}}}" if numeric else "")


class TwoTowerModel(Model):
    """A two-tower retrieval model: ``compute_loss`` = the retrieval task on both towers' outputs.

    TFRS's retrieval ``tfrs.Model`` (``MovielensModel`` of the tutorials)::

        def compute_loss(self, features, training=False):
            query_embeddings = self.query_model(features)
            candidate_embeddings = self.candidate_model(features)
            return self.task(query_embeddings, candidate_embeddings)

    Each tower is a module ``batch dict -> [B, D]`` (a ``FeatureTower`` or your own). The task
    is ``tasks.Retrieval`` (default ``Retrieval()``: TFRS's in-batch softmax, summed over the
    batch). Batch columns can feed the task's per-example inputs:

    * ``candidate_id_feature``: the ``[B]`` candidate ids, for ``remove_accidental_hits=True``
      (required then);
    * ``sample_weight_feature``: ``[B]`` per-example weights;
    * ``candidate_sampling_probability_feature``: ``[B]`` sampling probabilities for the logQ
      correction.

    ``compute_loss(batch, training, hparams)`` takes the train state's hyperparameters: a
    ``"temperature"`` entry there replaces the task's temperature (so ``train.sweep`` can vary
    it). The towers run separately through ``rs.apply(model, params, batch,
    method="query_embeddings")`` / ``method="candidate_embeddings"`` (e.g. to fill an index);
    ``candidate_embeddings_for_table`` does the latter for a whole table.

    Parameters: ``{"query_tower": ..., "candidate_tower": ...}`` (the task has none). One module
    given as both towers (a shared tower) has one set of parameters.

    Args:
        query_tower: ``batch -> [B, D]``.
        candidate_tower: ``batch -> [B, D]``.
        task: the ``Retrieval`` task (default ``Retrieval()``).
        candidate_id_feature: batch column of candidate ids (see above).
        sample_weight_feature: batch column of sample weights.
        candidate_sampling_probability_feature: batch column of sampling probabilities.
    """

    def __init__(
        self,
        query_tower: nn.Module,
        candidate_tower: nn.Module,
        task: Retrieval | None = None,
        *,
        candidate_id_feature: str | None = None,
        sample_weight_feature: str | None = None,
        candidate_sampling_probability_feature: str | None = None,
    ) -> None:
        super().__init__()
        for name, tower in (("query_tower", query_tower), ("candidate_tower", candidate_tower)):
            if not isinstance(tower, nn.Module):
                raise TypeError(
                    f"TwoTowerModel: {name} must be an nn.Module (batch -> [B, D]), got "
                    f"{type(tower).__name__}"
                )
        task = Retrieval() if task is None else task
        if not isinstance(task, nn.Module) or not callable(task):
            raise TypeError(
                f"TwoTowerModel: task must be a tasks.Retrieval module, got {type(task).__name__}"
            )
        if getattr(task, "remove_accidental_hits", False) and candidate_id_feature is None:
            raise ValueError(
                "TwoTowerModel: the task removes accidental hits, so it needs candidate ids: pass "
                "candidate_id_feature= (the batch column of candidate ids)"
            )
        q_dim = getattr(query_tower, "output_dim", None)
        c_dim = getattr(candidate_tower, "output_dim", None)
        if isinstance(q_dim, int) and isinstance(c_dim, int) and q_dim != c_dim:
            raise ValueError(
                f"TwoTowerModel: the towers' output widths differ: query_tower {q_dim}, "
                f"candidate_tower {c_dim} (the scores are dot products)"
            )
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.task = task
        self.candidate_id_feature = candidate_id_feature
        self.sample_weight_feature = sample_weight_feature
        self.candidate_sampling_probability_feature = candidate_sampling_probability_feature
        self.output_dim = q_dim if isinstance(q_dim, int) else c_dim

    def query_embeddings(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]``: the query tower on ``batch``."""
        return self.query_tower(batch)

    def candidate_embeddings(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]``: the candidate tower on ``batch``."""
        return self.candidate_tower(batch)

    def _optional(self, batch: Mapping[str, torch.Tensor], column: str | None, argument: str):
        if column is None:
            return None
        if column not in batch:
            raise KeyError(
                f"TwoTowerModel: the batch has no column {column!r} ({argument}); it has "
                f"{sorted(batch)}"
            )
        return batch[column]

    def compute_loss(
        self,
        batch: Mapping[str, torch.Tensor],
        training: bool = False,
        hparams: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """The task's loss on ``(query_tower(batch), candidate_tower(batch))``."""
        query = self.query_tower(batch)
        candidates = self.candidate_tower(batch)
        temperature = None if hparams is None else hparams.get("temperature")
        return self.task(
            query,
            candidates,
            sample_weight=self._optional(
                batch, self.sample_weight_feature, "sample_weight_feature"
            ),
            candidate_sampling_probability=self._optional(
                batch,
                self.candidate_sampling_probability_feature,
                "candidate_sampling_probability_feature",
            ),
            candidate_ids=self._optional(batch, self.candidate_id_feature, "candidate_id_feature"),
            temperature=temperature,
        )


# -- embeddings of a whole table -----------------------------------------------------------------

Table = pa.Table | pa.RecordBatch | Mapping[str, torch.Tensor]


def _arrow_to_numpy(name: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """One Arrow column as the ``Loader`` batches it: ``[N]``, or ``[N, L]`` for equal-length lists;
    integers as int64, floats as float32, bools as bool."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if arr.null_count:
        raise ValueError(
            f"candidate_embeddings_for_table: column {name!r} has {arr.null_count} null rows; "
            "fill or drop them first"
        )
    width = None
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        width = t.list_size if pa.types.is_fixed_size_list(t) else int(lengths.max(initial=0))
        if len(lengths) and (lengths.min() != width or lengths.max() != width):
            raise ValueError(
                f"candidate_embeddings_for_table: column {name!r} ({t}) has lists of lengths "
                f"{int(lengths.min())}..{int(lengths.max())}; pad them to one length first "
                "(data.pad_lists), as the Loader needs too"
            )
        arr = pc.list_flatten(arr)
        if arr.null_count:
            raise ValueError(
                f"candidate_embeddings_for_table: column {name!r} has null values in its lists"
            )
        t = arr.type
    if pa.types.is_integer(t):
        values = arr.to_numpy(zero_copy_only=False)
        if values.dtype == np.uint64 and len(values) and values.max() > np.iinfo(np.int64).max:
            raise ValueError(
                f"candidate_embeddings_for_table: column {name!r} holds uint64 values beyond "
                "int64's range"
            )
        values = values.astype(np.int64, copy=False)
    elif pa.types.is_floating(t):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    elif pa.types.is_boolean(t):
        values = arr.to_numpy(zero_copy_only=False)
    else:
        raise TypeError(
            f"candidate_embeddings_for_table: column {name!r} has type {t}, which is not a "
            "tensor (map strings to ids with data.StringLookup first), or leave it out with "
            "columns=[...]"
        )
    if not values.flags.writeable:  # a view of Arrow's buffers: copy once, so torch may own it
        values = values.copy()
    return values if width is None else values.reshape(-1, width)


def _batches_source(table: Table, columns: Sequence[str] | None) -> dict[str, Any]:
    """``{column: numpy array or tensor}``, all with the same first dimension."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if isinstance(table, pa.Table):
        names = list(table.column_names) if columns is None else list(columns)
        missing = [c for c in names if c not in table.column_names]
        if missing:
            raise KeyError(
                f"candidate_embeddings_for_table: the table has no column(s) {missing}; it has "
                f"{table.column_names}"
            )
        return {c: _arrow_to_numpy(c, table.column(c)) for c in names}
    if isinstance(table, Mapping):
        names = list(table) if columns is None else list(columns)
        missing = [c for c in names if c not in table]
        if missing:
            raise KeyError(
                f"candidate_embeddings_for_table: the dict has no column(s) {missing}; it has "
                f"{sorted(table)}"
            )
        out = {}
        for c in names:
            if not isinstance(table[c], torch.Tensor) or table[c].ndim < 1:
                raise TypeError(
                    f"candidate_embeddings_for_table: column {c!r} must be a tensor [N, ...]"
                )
            out[c] = table[c]
        return out
    raise TypeError(
        "candidate_embeddings_for_table: table must be a pyarrow.Table / RecordBatch or a dict "
        f"of tensors, got {type(table).__name__}"
    )


def candidate_embeddings_for_table(
    model: nn.Module,
    params: Params,
    table: Table,
    batch_size: int = 4096,
    *,
    columns: Sequence[str] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The candidate embeddings of every row of a table, ``[N, D]``, computed in batches.

    TFRS's ``candidates.batch(4096).map(model.candidate_model)`` (what the tutorials pass to
    ``FactorizedTopK`` or ``BruteForce.index_from_dataset``), as one tensor ready for
    ``metrics.factorized_top_k`` or an ``index``. Runs under ``torch.no_grad``; the result
    equals running the tower on the whole table at once (each batch's rows are independent).

    The table's columns become tensors as the ``data.Loader`` makes them (the tower sees the
    same batches as in training): integer columns int64 ``[N]``, float columns float32, bool
    columns bool, list columns whose rows all have length ``L`` ``[N, L]`` (bags and sequences
    padded with ``data.pad_lists`` / ``sequence_examples``). This is done here with pyarrow and
    numpy because models do not import ``torchrs_fn.data``. A dict of ``[N, ...]`` tensors is
    sliced as it is.

    Args:
        model: a ``TwoTowerModel`` (its ``candidate_embeddings`` method is used) or any tower
            module ``batch -> [B, D]`` (its forward), with
        params: the parameters of ``model`` (``params["candidate_tower"]`` for a tower of a
            ``TwoTowerModel`` passed alone).
        table: a ``pyarrow.Table`` / ``RecordBatch`` (e.g. the movies table after the lookups)
            or a dict ``{column: [N, ...] tensor}``.
        batch_size: rows per batch (>= 1); the last batch may be smaller.
        columns: the columns to convert and pass on. Default: the candidate tower's
            ``feature_names`` and ``lengths`` columns when it is a ``FeatureTower`` (so other
            columns, e.g. strings, are ignored), else every column.
        device: where the batches go (default: the device of ``params``).

    Returns:
        ``[N, D]`` candidate embeddings, row i from row i of the table.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"candidate_embeddings_for_table: batch_size must be a positive int, got {batch_size!r}"
        )
    method = "candidate_embeddings" if hasattr(model, "candidate_embeddings") else None
    if columns is None:
        tower = getattr(model, "candidate_tower", model)
        if isinstance(tower, FeatureTower):
            columns = [*tower.feature_names, *tower.lengths.values()]
            columns = list(dict.fromkeys(columns))
    source = _batches_source(table, columns)
    if not source:
        raise ValueError("candidate_embeddings_for_table: no columns to pass to the tower")
    sizes = {c: int(v.shape[0]) for c, v in source.items()}
    n = next(iter(sizes.values()))
    if len(set(sizes.values())) > 1:
        raise ValueError(f"candidate_embeddings_for_table: the columns' lengths differ: {sizes}")
    if n == 0:
        raise ValueError("candidate_embeddings_for_table: the table has no rows")
    if device is None:
        leaves = tree.leaves(params)
        device = leaves[0].device if leaves else torch.device("cpu")
    outputs = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = {
                c: (
                    v[start:stop]
                    if isinstance(v, torch.Tensor)
                    else torch.from_numpy(v[start:stop])
                ).to(device)
                for c, v in source.items()
            }
            out = apply(model, params, batch, method=method)
            if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != stop - start:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"candidate_embeddings_for_table: the tower returned {shape} for a batch of "
                    f"{stop - start} rows; expected [{stop - start}, D]"
                )
            outputs.append(out)
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]
