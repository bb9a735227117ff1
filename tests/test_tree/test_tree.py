"""torchrs_fn.tree against plain-torch references."""

from typing import NamedTuple

import pytest
import torch

from torchrs_fn import tree


class Pair(NamedTuple):
    a: torch.Tensor
    b: dict


def _example(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "emb": {"weight": torch.randn(4, 3, generator=g)},
        "dense": [torch.randn(3, generator=g), torch.randn(2, 2, generator=g)],
        "state": Pair(torch.randn(()), {"x": torch.randn(5, generator=g)}),
    }


def test_map_and_leaves_follow_structure():
    t = _example(0)
    doubled = tree.map(lambda x: 2 * x, t)
    assert torch.equal(doubled["emb"]["weight"], 2 * t["emb"]["weight"])
    assert torch.equal(doubled["dense"][1], 2 * t["dense"][1])
    assert isinstance(doubled["state"], Pair)
    assert len(tree.leaves(t)) == 5
    summed = tree.map(lambda x, y: x + y, t, doubled)
    assert torch.allclose(summed["state"].b["x"], 3 * t["state"].b["x"])


def test_global_norm_matches_norm_of_concatenation():
    t = _example(1)
    flat = torch.cat([x.reshape(-1) for x in tree.leaves(t)])
    assert torch.allclose(tree.global_norm(t), torch.linalg.vector_norm(flat))


def test_zeros_like_and_sizes():
    t = _example(2)
    z = tree.zeros_like(t)
    assert all(torch.count_nonzero(x) == 0 for x in tree.leaves(z))
    assert tree.size(t) == 12 + 3 + 4 + 1 + 5
    assert tree.nbytes(t) == 4 * tree.size(t)


def test_stack_unstack_round_trip_and_vmap():
    trees = [_example(s) for s in range(3)]
    stacked = tree.stack(trees)
    assert stacked["emb"]["weight"].shape == (3, 4, 3)
    for original, back in zip(trees, tree.unstack(stacked)):
        assert tree.allclose(original, back, rtol=0, atol=0)
    norms = torch.vmap(tree.global_norm)(stacked)
    assert torch.allclose(norms, torch.stack([tree.global_norm(t) for t in trees]))


def test_stack_rejects_mismatched_structures():
    with pytest.raises(ValueError, match="structure"):
        tree.stack([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(ValueError, match="at least one"):
        tree.stack([])


def test_flatten_dict_round_trip_and_paths():
    nested = {"a": {"b": torch.ones(1), "c": {"d": torch.zeros(2)}}, "e": torch.ones(3)}
    flat = tree.flatten_dict(nested)
    assert sorted(flat) == ["a.b", "a.c.d", "e"]
    assert tree.allclose(tree.unflatten_dict(flat), nested)
    paths = [p for p, _ in tree.flatten_with_paths(nested)]
    assert paths == ["a.b", "a.c.d", "e"]
    with pytest.raises(ValueError, match="duplicate|clashes"):
        tree.unflatten_dict({"a": torch.ones(1), "a.b": torch.ones(1)})
