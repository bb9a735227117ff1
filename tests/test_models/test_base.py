"""init / apply / Model / save_tree against hand-built references."""

import math

import pytest
import torch
from torch import nn

import torchrs_fn as rs
from torchrs_fn import tree


class Towers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 8)
        self.dense = nn.Linear(8, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dense(self.embedding(ids)))


def test_init_is_seeded_and_uses_keras_defaults():
    m = Towers()
    state = torch.get_rng_state()
    p0, p0b, p1 = rs.init(m, seed=0), rs.init(m, seed=0), rs.init(m, seed=1)
    assert torch.equal(torch.get_rng_state(), state), "init must not touch the global RNG"
    assert tree.allclose(p0, p0b, rtol=0, atol=0)
    assert not torch.equal(p0["embedding"]["weight"], p1["embedding"]["weight"])
    emb = p0["embedding"]["weight"]
    assert emb.abs().max() <= 0.05 and emb.abs().max() > 0.04  # uniform(-0.05, 0.05)
    bound = math.sqrt(6 / (8 + 4))  # glorot uniform, fan_in 8, fan_out 4
    w = p0["dense"]["weight"]
    assert w.abs().max() <= bound and w.abs().max() > 0.7 * bound
    assert torch.count_nonzero(p0["dense"]["bias"]) == 0
    assert torch.equal(p0["norm"]["weight"], torch.ones(4))  # torch's own reset_parameters


def test_init_leaves_module_stateless():
    m = Towers()
    rs.init(m, seed=0)
    assert all(p.device.type == "meta" for p in m.parameters())
    with pytest.raises(RuntimeError, match="torchrs_fn.apply"):
        m(torch.tensor([1, 2]))


def test_apply_matches_hand_computation_and_autograd():
    m = Towers()
    params = rs.init(m, seed=3)
    ids = torch.tensor([1, 7, 7, 49])
    e = params["embedding"]["weight"][ids]
    h = e @ params["dense"]["weight"].T + params["dense"]["bias"]
    expected = nn.functional.layer_norm(h, (4,), params["norm"]["weight"], params["norm"]["bias"])
    out = rs.apply(m, params, ids)
    assert torch.allclose(out, expected, atol=1e-6)
    # Submodule with its sub-dict.
    assert torch.equal(rs.apply(m.embedding, params["embedding"], ids), e)

    # torch.func.grad through apply == autograd on a stateful copy with the same weights.
    def loss(p):
        return rs.apply(m, p, ids).pow(2).sum()

    grads = torch.func.grad(loss)(params)
    ref = Towers()
    ref.load_state_dict(tree.flatten_dict(params))
    ref(ids).pow(2).sum().backward()
    for name, g in tree.flatten_dict(grads).items():
        assert torch.allclose(g, ref.get_parameter(name).grad, atol=1e-6), name


def test_apply_errors_name_the_problem():
    m = Towers()
    params = rs.init(m, seed=0)
    bad = tree.map(lambda x: x, params)
    bad["embedding"]["weight"] = torch.zeros(50, 9)
    with pytest.raises(ValueError, match=r"embedding.weight.*\(50, 9\).*\(50, 8\)"):
        rs.apply(m, bad, torch.tensor([1]))
    missing = {"embedding": params["embedding"]}
    with pytest.raises(KeyError, match="dense"):
        rs.apply(m, missing, torch.tensor([1]))
    extra = {**params, "other": {"weight": torch.zeros(1)}}
    with pytest.raises(KeyError, match="other.weight"):
        rs.apply(m, extra, torch.tensor([1]))


def test_model_compute_loss_through_apply_and_method():
    class Tiny(rs.Model):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(2, 1, bias=False)

        def compute_loss(self, batch, training=False):
            return ((self.w(batch["x"]).squeeze(1) - batch["y"]) ** 2).sum()

        def predict(self, x):
            return self.w(x)

    model = Tiny()
    params = rs.init(model, seed=0)
    batch = {"x": torch.tensor([[1.0, 2.0], [3.0, -1.0]]), "y": torch.tensor([0.5, -0.5])}
    w = params["w"]["weight"][0]
    expected = ((batch["x"] @ w - batch["y"]) ** 2).sum()
    assert torch.allclose(rs.apply(model, params, batch), expected)
    assert torch.allclose(
        rs.apply(model, params, batch["x"], method="predict")[:, 0], batch["x"] @ w
    )
    assert torch.allclose(rs.models.loss_fn_of(model)(params, batch), expected)


def test_save_and_load_tree_round_trip(tmp_path):
    m = Towers()
    params = rs.init(m, seed=0)
    params["half"] = {"x": torch.randn(3, 2).to(torch.bfloat16), "i": torch.arange(4)}
    path = tmp_path / "params.trs"
    rs.save_tree(path, params)
    loaded = rs.load_tree(path)
    assert tree.structure(loaded) == tree.structure(params)
    for a, b in zip(tree.leaves(loaded), tree.leaves(params)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    # The file holds no pickle: its header is JSON.
    raw = path.read_bytes()
    assert raw[8:9] == b"{" and b"\x80\x04" not in raw[:64]
    path.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        rs.load_tree(path)


def test_load_tree_restores_namedtuples_with_like(tmp_path):
    from torchrs_fn import optim, train

    params = rs.init(Towers(), seed=0)
    state = train.init_state(params, optim.adam(1e-3))
    rs.save_tree(tmp_path / "s.trs", state)
    back = rs.load_tree(tmp_path / "s.trs", like=state)
    assert type(back) is type(state) and type(back.opt_state) is type(state.opt_state)
    assert tree.allclose(back, state, rtol=0, atol=0)
