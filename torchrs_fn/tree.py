"""Pytree helpers on optree.

Parameters, gradients, optimizer states and train states are pytrees: nested dicts, lists, tuples and
NamedTuples whose leaves are tensors. Every function here is pure (it never mutates its inputs) and
works under ``torch.func`` transforms and ``torch.compile``.

``stack`` / ``unstack`` turn a list of same-shaped trees into one tree with a new leading axis and
back, which is how N configurations of a sweep are trained at once under ``torch.vmap``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import optree
import torch

__all__ = [
    "map",
    "leaves",
    "structure",
    "unflatten",
    "zeros_like",
    "ones_like",
    "global_norm",
    "stack",
    "unstack",
    "size",
    "nbytes",
    "flatten_with_paths",
    "unflatten_dict",
    "flatten_dict",
    "allclose",
]

PyTree = Any

# optree treats None as an empty node by default, like JAX: a None leaf means "no value here".
_NS = "torchrs_fn"


def map(fn: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """Apply ``fn`` leafwise over ``tree`` (and ``rest``, which must share its structure)."""
    return optree.tree_map(fn, tree, *rest, namespace=_NS)


def leaves(tree: PyTree) -> list[Any]:
    """The leaves of ``tree`` in a deterministic (key-sorted for dicts) order."""
    return optree.tree_leaves(tree, namespace=_NS)


def structure(tree: PyTree) -> optree.PyTreeSpec:
    """The tree structure (an optree ``PyTreeSpec``) of ``tree``."""
    return optree.tree_structure(tree, namespace=_NS)


def unflatten(spec: optree.PyTreeSpec, leaves_: Sequence[Any]) -> PyTree:
    """Rebuild a tree from ``spec`` and a list of leaves (inverse of ``leaves``)."""
    return optree.tree_unflatten(spec, list(leaves_))


def zeros_like(tree: PyTree) -> PyTree:
    """A tree of zeros with the shapes, dtypes and devices of ``tree``."""
    return map(torch.zeros_like, tree)


def ones_like(tree: PyTree) -> PyTree:
    """A tree of ones with the shapes, dtypes and devices of ``tree``."""
    return map(torch.ones_like, tree)


def global_norm(tree: PyTree) -> torch.Tensor:
    """The L2 norm of all leaves taken together, as a 0-d tensor: ``sqrt(sum_i ||leaf_i||^2)``."""
    squares = [torch.sum(torch.square(x.to(torch.float32))) for x in leaves(tree)]
    if not squares:
        return torch.zeros(())
    return torch.sqrt(torch.stack(squares).sum())


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack same-structured trees leafwise along a new leading axis ``[N, ...]``.

    The result can be passed to ``torch.vmap`` (``in_dims=0``) to run N configurations at once.
    """
    trees = list(trees)
    if not trees:
        raise ValueError("stack: needs at least one tree, got an empty sequence")
    spec = structure(trees[0])
    for i, t in enumerate(trees[1:], start=1):
        if structure(t) != spec:
            raise ValueError(
                f"stack: tree {i} has structure {structure(t)}, expected {spec} (as tree 0)"
            )
    flat = [leaves(t) for t in trees]
    return unflatten(spec, [torch.stack(list(xs)) for xs in zip(*flat)])


def unstack(tree: PyTree) -> list[PyTree]:
    """Inverse of ``stack``: split every leaf along its leading axis into a list of trees."""
    flat, spec = optree.tree_flatten(tree, namespace=_NS)
    if not flat:
        raise ValueError("unstack: the tree has no leaves")
    n = flat[0].shape[0]
    for x in flat:
        if x.ndim == 0 or x.shape[0] != n:
            raise ValueError(
                f"unstack: every leaf needs the same leading size {n}, got shape {tuple(x.shape)}"
            )
    return [unflatten(spec, [x[i] for x in flat]) for i in range(n)]


def size(tree: PyTree) -> int:
    """Total number of elements over all tensor leaves (e.g. the parameter count)."""
    return builtins.sum(x.numel() for x in leaves(tree) if isinstance(x, torch.Tensor))


def nbytes(tree: PyTree) -> int:
    """Total bytes held by the tensor leaves of ``tree``."""
    return builtins.sum(
        x.numel() * x.element_size() for x in leaves(tree) if isinstance(x, torch.Tensor)
    )


def flatten_with_paths(tree: PyTree) -> list[tuple[str, Any]]:
    """``[(dotted.path, leaf), ...]`` for a tree, e.g. ``("user_model.weight", tensor)``."""
    paths, flat, _ = optree.tree_flatten_with_path(tree, namespace=_NS)
    return [(".".join(str(k) for k in path), leaf) for path, leaf in zip(paths, flat)]


def flatten_dict(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> flat dict with dotted keys (``{"a": {"b": x}} -> {"a.b": x}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_dict(value, prefix=name + "."))
        else:
            out[name] = value
    return out


def unflatten_dict(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat dict with dotted keys -> nested dict (inverse of ``flatten_dict``)."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, last = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"unflatten_dict: key {name!r} clashes with a leaf at {p!r}")
        if last in node:
            raise ValueError(f"unflatten_dict: duplicate key {name!r}")
        node[last] = value
    return out


def allclose(a: PyTree, b: PyTree, *, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when two trees share a structure and every pair of leaves is ``torch.allclose``."""
    if structure(a) != structure(b):
        return False
    return all(torch.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(leaves(a), leaves(b)))
