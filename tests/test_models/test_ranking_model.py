"""models.DLRM: TFRS's Ranking forward rebuilt by hand from the params dict; gradients; errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchrs_fn as rs
from torchrs_fn import tree
from torchrs_fn.layers.interaction import DotInteraction
from torchrs_fn.models.ranking import DLRM

G = torch.Generator().manual_seed(0)
DENSE = torch.randn(6, 3, generator=G)
IDS = torch.stack([torch.randint(0, v, (6,), generator=G) for v in (5, 7, 4)], dim=1)
LABELS = torch.randint(0, 2, (6,), generator=G).float()


def _mlp(p, x, final_relu):
    for i in range(len(p["layers"])):
        x = x @ p["layers"][str(i)]["weight"].T + p["layers"][str(i)]["bias"]
        if i < len(p["layers"]) - 1 or final_relu:
            x = torch.relu(x)
    return x


def _reference(params, names, dense, ids, kind, cross_layers=0):
    """TFRS's Ranking.call by hand: sparse embeddings first, bottom output last; the dot
    products in TFRS's order by explicit loops; concat [bottom, interaction]; top stack."""
    emb = [params["embeddings"][n]["weight"][ids[:, i]] for i, n in enumerate(names)]
    b = _mlp(params["bottom"], dense, final_relu=True)
    vecs = [*emb, b]
    if kind == "dot":
        z = torch.stack(
            [
                torch.stack([vecs[i][n] @ vecs[j][n] for i in range(len(vecs)) for j in range(i)])
                for n in range(dense.shape[0])
            ]
        )
    else:
        x0 = torch.cat(vecs, dim=1)
        x = x0
        for i in range(cross_layers):
            c = params["interaction"]["layers"][str(i)]
            w = c["weight"] if "weight" in c else c["v_weight"] @ c["u_weight"]
            x = x0 * (x @ w.T + c["bias"]) + x
        z = x
    return _mlp(params["top"], torch.cat([b, z], dim=1), final_relu=False)[:, 0]


def _bce(logits, labels):
    return F.binary_cross_entropy_with_logits(logits, labels)


def test_dot_model_layout_and_forward_match_tfrs_by_hand():
    model = DLRM(3, [5, 7, 4], 4, bottom_units=(8, 4), top_units=(16, 1))
    params = rs.init(model, seed=0)
    shapes = {k: tuple(v.shape) for k, v in tree.flatten_dict(params).items()}
    assert shapes["embeddings.0.weight"] == (5, 4)
    assert shapes["embeddings.1.weight"] == (7, 4)
    assert shapes["embeddings.2.weight"] == (4, 4)
    assert shapes["bottom.layers.1.weight"] == (4, 8)
    assert shapes["top.layers.0.weight"] == (16, 4 + 4 * 3 // 2)  # bottom + (F+1)F/2 products
    for n in "012":  # Keras Embedding init
        w = params["embeddings"][n]["weight"]
        assert w.abs().max() <= 0.05 and w.abs().max() > 0
    logits = rs.apply(model, params, DENSE, IDS)
    assert logits.shape == (6,)
    torch.testing.assert_close(logits, _reference(params, "012", DENSE, IDS, "dot"))


def test_cross_model_matches_dcn_by_hand():
    model = DLRM(
        3,
        [5, 7, 4],
        4,
        bottom_units=(8, 6),
        top_units=(16, 1),
        interaction="cross",
        num_cross_layers=2,
        projection_dim=3,
    )
    params = rs.init(model, seed=1)
    assert params["interaction"]["layers"]["1"]["u_weight"].shape == (3, 3 * 4 + 6)
    assert params["top"]["layers"]["0"]["weight"].shape == (16, 6 + 18)
    logits = rs.apply(model, params, DENSE, IDS)
    torch.testing.assert_close(logits, _reference(params, "012", DENSE, IDS, "cross", 2))
    full = DLRM(3, [5, 7, 4], 4, bottom_units=(8, 4), top_units=(4, 1), interaction="cross")
    p = rs.init(full, seed=0)
    torch.testing.assert_close(
        rs.apply(full, p, DENSE, IDS), _reference(p, "012", DENSE, IDS, "cross", 3)
    )


def test_dict_features_are_ordered_by_name_as_tf_nest_flatten_does():
    model = DLRM(3, {"user": 5, "item": 7}, 4, bottom_units=(4,), top_units=(8, 1))
    assert model.feature_names == ("item", "user")
    params = rs.init(model, seed=0)
    assert params["embeddings"]["item"]["weight"].shape == (7, 4)
    sparse = {"user": IDS[:, 0], "item": IDS[:, 1]}
    expected = _reference(params, ["item", "user"], DENSE, IDS[:, [1, 0]], "dot")
    torch.testing.assert_close(rs.apply(model, params, DENSE, sparse), expected)


def test_interaction_modules_and_options():
    # A DotInteraction instance (skip_gather: [B, 16] with zeros) and self_interaction.
    skip = DLRM(
        3,
        [5, 7, 4],
        4,
        bottom_units=(4,),
        top_units=(2, 1),
        interaction=DotInteraction(skip_gather=True),
    )
    p = rs.init(skip, seed=0)
    assert p["top"]["layers"]["0"]["weight"].shape == (2, 4 + 16)
    assert rs.apply(skip, p, DENSE, IDS).shape == (6,)
    own = DLRM(3, [5, 7, 4], 4, bottom_units=(4,), top_units=(2, 1), self_interaction=True)
    assert rs.init(own, seed=0)["top"]["layers"]["0"]["weight"].shape == (2, 4 + 10)

    class SumOfVectors(nn.Module):  # a custom interaction gets TFRS's list [e_1, ..., e_F, b]
        def __init__(self):
            super().__init__()
            self.scale = nn.Linear(4, 2)

        def forward(self, vectors):
            assert len(vectors) == 4
            return self.scale(torch.stack(vectors).sum(0))

    custom = DLRM(
        3,
        [5, 7, 4],
        4,
        bottom_units=(4,),
        top_units=(3,),
        interaction=SumOfVectors(),
        interaction_out_features=2,
        concat_dense=False,
    )
    p = rs.init(custom, seed=0)
    out = rs.apply(custom, p, DENSE, IDS)
    assert out.shape == (6, 3)  # top_units[-1] > 1 keeps the last axis
    emb = [p["embeddings"][n]["weight"][IDS[:, i]] for i, n in enumerate("012")]
    z = (sum(emb) + _mlp(p["bottom"], DENSE, True)) @ p["interaction"]["scale"]["weight"].T
    z = z + p["interaction"]["scale"]["bias"]
    torch.testing.assert_close(out, _mlp(p["top"], z, final_relu=False))


@pytest.mark.parametrize("kind", ["dot", "cross"])
def test_gradient_reaches_every_parameter_and_matches_autograd(kind):
    model = DLRM(
        3,
        [5, 7, 4],
        4,
        bottom_units=(8, 4),
        top_units=(16, 1),
        interaction=kind,
        num_cross_layers=2,
    )
    params = rs.init(model, seed=2)
    grads = torch.func.grad(lambda p: _bce(rs.apply(model, p, DENSE, IDS), LABELS))(params)
    leaves = tree.map(lambda t: t.clone().requires_grad_(), params)
    ref = _bce(_reference(leaves, "012", DENSE, IDS, kind, 2), LABELS)
    flat_leaves = tree.flatten_dict(leaves)
    expected = dict(zip(flat_leaves, torch.autograd.grad(ref, list(flat_leaves.values()))))
    for name, g in tree.flatten_dict(grads).items():
        assert g.abs().sum() > 0, f"no gradient reaches {name}"
        torch.testing.assert_close(g, expected[name], msg=name)
    # Rows of a table that no id uses get exactly zero.
    unused = sorted(set(range(7)) - set(IDS[:, 1].tolist()))
    assert unused and torch.count_nonzero(grads["embeddings"]["1"]["weight"][unused]) == 0


def test_vmap_over_stacked_params_and_per_example():
    model = DLRM(3, [5, 7, 4], 4, bottom_units=(8, 4), top_units=(8, 1))
    seeds = [rs.init(model, seed=s) for s in range(2)]
    batched = torch.vmap(lambda p: rs.apply(model, p, DENSE, IDS))(tree.stack(seeds))
    for s, p in enumerate(seeds):
        torch.testing.assert_close(batched[s], rs.apply(model, p, DENSE, IDS))
    per_example = torch.vmap(lambda d, i: rs.apply(model, seeds[0], d, i))(DENSE, IDS)
    torch.testing.assert_close(per_example, rs.apply(model, seeds[0], DENSE, IDS))


def test_clear_errors():
    model = DLRM(3, [5, 7, 4], 4, bottom_units=(8, 4), top_units=(8, 1))
    params = rs.init(model, seed=0)
    with pytest.raises(ValueError, match=r"dense features of shape \[\.\.\., 3\], got \(6, 2\)"):
        rs.apply(model, params, DENSE[:, :2], IDS)
    with pytest.raises(ValueError, match=r"sparse ids of shape \[\.\.\., 3\], got \(6, 2\)"):
        rs.apply(model, params, DENSE, IDS[:, :2])
    bad = IDS.clone()
    bad[2, 1] = 7
    with pytest.raises(
        IndexError, match=r"feature '1' must lie in \[0, 7\), got values in \[\d+, 7\]"
    ):
        rs.apply(model, params, DENSE, bad)
    bad[2, 1] = -1
    with pytest.raises(IndexError, match=r"feature '1'.*\[-1, \d+\]"):
        rs.apply(model, params, DENSE, bad)
    with pytest.raises(TypeError, match="integers"):
        rs.apply(model, params, DENSE, IDS.float())
    with pytest.raises(TypeError, match="floating-point"):
        rs.apply(model, params, DENSE.long(), IDS)
    with pytest.raises(ValueError, match="batch shape"):
        rs.apply(model, params, DENSE[:4], IDS)
    with pytest.raises(TypeError, match="a dict of id columns"):
        named = DLRM(3, {"a": 3}, 4, bottom_units=(4,))
        rs.apply(named, rs.init(named, seed=0), DENSE, IDS[:, :1])
    with pytest.raises(KeyError, match=r"lacks the features \['b'\]"):
        named = DLRM(3, {"a": 3, "b": 2}, 4, bottom_units=(4,))
        rs.apply(named, rs.init(named, seed=0), DENSE, {"a": IDS[:, 0] % 3})
    with pytest.raises(ValueError, match=r"bottom_units\[-1\] == embedding_dim \(4\)"):
        DLRM(3, [5], 4, bottom_units=(8, 6))
    with pytest.raises(ValueError, match="interaction_out_features"):
        DLRM(3, [5], 4, bottom_units=(4,), interaction=nn.Identity())
    with pytest.raises(ValueError, match="'dot', 'cross' or a module, got 'dcn'"):
        DLRM(3, [5], 4, interaction="dcn")
    with pytest.raises(ValueError, match=r"features \['1'\]"):
        DLRM(3, [5, 0], 4)


@pytest.mark.compile
def test_compiled_grad_matches_eager_and_bad_ids_still_fail():
    dot = DLRM(3, [5, 7, 4], 4, bottom_units=(8, 4), top_units=(8, 1))
    cross = DLRM(
        3,
        [5, 7, 4],
        4,
        bottom_units=(8, 4),
        top_units=(8, 1),
        interaction="cross",
        projection_dim=2,
    )
    params = {"dot": rs.init(dot, seed=0), "cross": rs.init(cross, seed=1)}

    def loss(p, dense, ids, labels):
        return _bce(rs.apply(dot, p["dot"], dense, ids), labels) + _bce(
            rs.apply(cross, p["cross"], dense, ids), labels
        )

    grad = torch.func.grad_and_value(loss)
    eager = grad(params, DENSE, IDS, LABELS)
    compiled_fn = torch.compile(grad, fullgraph=True)
    compiled = compiled_fn(params, DENSE, IDS, LABELS)
    assert tree.allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    bad = IDS.clone()
    bad[0, 2] = 4  # the eager range check is skipped when compiled; the lookup's own bound fires
    with pytest.raises(RuntimeError, match="out of bounds"):
        compiled_fn(params, DENSE, bad, LABELS)
