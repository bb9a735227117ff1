"""Optimizers as pairs of pure functions, in the optax shape.

A ``GradientTransformation`` is ``(init, update)``:

* ``init(params) -> state``
* ``update(grads, state, params=None) -> (updates, new_state)``

and ``apply_updates(params, updates)`` adds the updates to the parameters. Nothing is mutated:
every function returns new trees, so a step can run under ``torch.func`` transforms, ``vmap``
and ``torch.compile``. Hyperparameters (learning rate, betas, weight decay, ...) are stored in the
state as tensors under ``state.hparams``: a stacked state trains several configurations at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from .. import tree

__all__ = [
    "GradientTransformation",
    "apply_updates",
    "chain",
    "partition",
    "label_by_path",
    "ChainState",
    "PartitionState",
    "hparam",
    "hparam_names",
    "set_hparams",
]

PyTree = Any
Schedule = Callable[[torch.Tensor], torch.Tensor]


class GradientTransformation(NamedTuple):
    """An optimizer: ``init(params) -> state`` and ``update(grads, state, params) -> (updates, state)``."""

    init: Callable[[PyTree], PyTree]
    update: Callable[..., tuple[PyTree, PyTree]]


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``params + updates`` leafwise (updates are cast to each parameter's dtype)."""
    return tree.map(lambda p, u: p + u.to(p.dtype), params, updates)


def hparam(value: float | torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """A hyperparameter as a float32 0-d tensor on the device of ``like`` (if given).

    A tensor value is cast, not detached: a gradient with respect to it (a hypergradient through
    ``init_state`` or ``set_hparams``) flows through the state.
    """
    device = like.device if like is not None else None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a hyperparameter must be a scalar, got shape {tuple(value.shape)}")
        return value.to(dtype=torch.float32, device=device).reshape(())
    return torch.tensor(float(value), dtype=torch.float32, device=device)


def _first_leaf(params: PyTree) -> torch.Tensor | None:
    ls = tree.leaves(params)
    return ls[0] if ls else None


class ChainState(NamedTuple):
    """State of ``chain``: the inner states in order."""

    inner: tuple


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Run transformations one after the other, each on the previous one's updates.

    ``chain(clip_by_global_norm(1.0), adam(1e-3))`` clips gradients, then applies Adam.
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(
                f"chain: argument {i} is a {type(t).__name__}, expected a GradientTransformation"
            )

    def init(params: PyTree) -> ChainState:
        return ChainState(tuple(t.init(params) for t in transforms))

    def update(grads: PyTree, state: ChainState, params: PyTree = None):
        new_states = []
        for t, s in zip(transforms, state.inner):
            grads, s = t.update(grads, s, params)
            new_states.append(s)
        return grads, ChainState(tuple(new_states))

    return GradientTransformation(init, update)


class PartitionState(NamedTuple):
    """State of ``partition``: one inner state per label."""

    inner: dict


def label_by_path(fn: Callable[[str], str]) -> Callable[[PyTree], PyTree]:
    """Labels from dotted parameter paths: ``label_by_path(lambda p: "emb" if "embedding" in p else "rest")``."""

    def labels(params: PyTree) -> PyTree:
        spec = tree.structure(params)
        return tree.unflatten(spec, [fn(path) for path, _ in tree.flatten_with_paths(params)])

    return labels


def partition(
    transforms: Mapping[str, GradientTransformation],
    param_labels: PyTree | Callable[[PyTree], PyTree],
) -> GradientTransformation:
    """Apply a different optimizer to each labelled group of parameters.

    This is TFRS's ``CompositeOptimizer`` (e.g. Adagrad for embeddings, Adam for the rest) in the
    optax ``multi_transform`` shape.

    Args:
        transforms: ``{label: optimizer}``.
        param_labels: a tree with the structure of the params whose leaves are labels, or a
            function ``params -> labels tree`` (see ``label_by_path``).

    Every parameter must carry a label that ``transforms`` names; an unknown label is an error.
    """
    transforms = dict(transforms)

    def labels_of(params: PyTree) -> list[str]:
        labels = param_labels(params) if callable(param_labels) else param_labels
        spec = tree.structure(params)
        try:
            flat_labels = spec.flatten_up_to(labels)
        except ValueError as e:
            raise ValueError(
                f"partition: param_labels must have the structure of the params ({spec}): {e}"
            ) from None
        paths = [p for p, _ in tree.flatten_with_paths(params)]
        for path, label in zip(paths, flat_labels):
            if label not in transforms:
                raise KeyError(
                    f"partition: parameter {path!r} has label {label!r}, but transforms only "
                    f"has {sorted(transforms)}"
                )
        return flat_labels

    def split(t: PyTree, labels: list[str]) -> dict[str, list]:
        flat = tree.leaves(t) if t is not None else None
        groups: dict[str, list] = {k: [] for k in transforms}
        for i, label in enumerate(labels):
            groups[label].append(flat[i] if flat is not None else None)
        return groups

    def init(params: PyTree) -> PartitionState:
        labels = labels_of(params)
        groups = split(params, labels)
        return PartitionState({k: transforms[k].init(groups[k]) for k in transforms})

    def update(grads: PyTree, state: PartitionState, params: PyTree = None):
        labels = labels_of(grads)
        g_groups = split(grads, labels)
        p_groups = split(params, labels) if params is not None else {k: None for k in transforms}
        out_groups, new_inner = {}, {}
        for k, t in transforms.items():
            out_groups[k], new_inner[k] = t.update(g_groups[k], state.inner[k], p_groups[k])
        iters = {k: iter(v) for k, v in out_groups.items()}
        flat_updates = [next(iters[label]) for label in labels]
        return tree.unflatten(tree.structure(grads), flat_updates), PartitionState(new_inner)

    return GradientTransformation(init, update)


def _map_hparam_dicts(state: PyTree, fn: Callable[[str, dict], dict], path: str = "") -> PyTree:
    """``state`` rebuilt with each ``hparams`` dict ``d`` replaced by ``fn(owner_path, d)``.

    ``owner_path`` is the dotted path of the NamedTuple that holds the dict (``""`` at the top,
    ``"inner.1."`` inside ``chain``); the one walk serves both listing and replacing.
    """
    if hasattr(state, "_fields"):
        return type(state)(
            **{
                field: fn(path, value)
                if field == "hparams" and isinstance(value, dict)
                else _map_hparam_dicts(value, fn, f"{path}{field}.")
                for field, value in zip(state._fields, state)
            }
        )
    if isinstance(state, (tuple, list)):
        return type(state)(_map_hparam_dicts(v, fn, f"{path}{i}.") for i, v in enumerate(state))
    if isinstance(state, dict):
        return {k: _map_hparam_dicts(v, fn, f"{path}{k}.") for k, v in state.items()}
    return state


def hparam_names(opt_state: PyTree) -> list[str]:
    """The full dotted names of the hyperparameters in an optimizer state.

    For ``adam`` they are ``["hparams.learning_rate", "hparams.b1", ...]``; inside ``chain`` or
    ``partition`` the path says which transform owns each (``"inner.1.hparams.learning_rate"``).
    ``set_hparams`` accepts these names or any unambiguous suffix (``"learning_rate"``).
    """
    names: list[str] = []

    def collect(owner: str, d: dict) -> dict:
        names.extend(f"{owner}hparams.{k}" for k in d)
        return d

    _map_hparam_dicts(opt_state, collect)
    return names


def _resolve(name: str, full: list[str]) -> str:
    matches = [f for f in full if f == name or f.endswith("." + name)]
    if not matches:
        raise KeyError(
            f"hyperparameter {name!r} is not in the optimizer's state; it has {full} "
            "(a learning-rate schedule keeps no 'learning_rate' there: pass a float to sweep it)"
        )
    if len(matches) > 1:
        raise KeyError(
            f"hyperparameter {name!r} is ambiguous: it matches {matches}; use a full name"
        )
    return matches[0]


def set_hparams(opt_state: PyTree, values: Mapping[str, float | torch.Tensor]) -> PyTree:
    """A copy of ``opt_state`` with the named hyperparameters replaced (float32 0-d tensors).

    ``set_hparams(state, {"learning_rate": 0.05})``; names as ``hparam_names`` lists them or an
    unambiguous suffix. A name the state does not hold is a ``KeyError`` that lists what it holds.
    """
    full = hparam_names(opt_state)
    wanted = {_resolve(name, full): value for name, value in values.items()}

    def replace(owner: str, d: dict) -> dict:
        return {
            k: hparam(wanted[f"{owner}hparams.{k}"], v).to(v.dtype)
            if f"{owner}hparams.{k}" in wanted
            else v
            for k, v in d.items()
        }

    return _map_hparam_dicts(opt_state, replace)
