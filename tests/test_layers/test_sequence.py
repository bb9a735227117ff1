"""GRUEncoder and TransformerEncoder against torch's own GRUCell / TransformerEncoderLayer.

The references are torch's stateful modules loaded with the same weights and run the way Keras
runs a masked GRU (a loop over each row's real steps only) or the way torch masks padded keys.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
import torch
from torch import nn

import torchrs_fn as rs
from torchrs_fn import data, tree
from torchrs_fn.layers import GRUEncoder, TransformerEncoder

NUM_ITEMS = 12


def _perturbed(params, seed: int):
    """The init params plus noise, so that zero biases and unit norms are exercised too."""
    g = torch.Generator().manual_seed(seed)
    return tree.map(lambda x: x + 0.3 * torch.randn(x.shape, generator=g), params)


def _sequence_batch():
    """A ``sequence_examples`` table of three users' timelines, as the Loader would batch it."""
    table = pa.table(
        {
            "user_id": [1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3],
            "movie_id": [3, 5, 7, 2, 9, 4, 4, 11, 1, 8, 6, 10],
            "timestamp": [5, 1, 2, 3, 4, 9, 8, 7, 1, 2, 3, 4],
        }
    )
    examples = data.sequence_examples(table, max_context_length=3, min_timeline_length=3)
    context = torch.tensor(examples["context"].to_pylist())
    lengths = torch.tensor(examples["context_length"].to_pylist())
    return context, lengths


def _gru_reference(params, ids: torch.Tensor, valid: torch.Tensor, hidden: int) -> torch.Tensor:
    """Keras's masked GRU: each row runs a GRUCell over its real positions only, from zeros."""
    cell = nn.GRUCell(params["embedding"]["weight"].shape[1], hidden)
    cell.load_state_dict({k: params[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    table = params["embedding"]["weight"]
    rows = []
    with torch.no_grad():
        for b in range(ids.shape[0]):
            h = torch.zeros(1, hidden)
            for t in range(ids.shape[1]):
                if valid[b, t]:
                    h = cell(table[ids[b, t]][None], h)
            rows.append(h[0])
    return torch.stack(rows)


# -- GRUEncoder -----------------------------------------------------------------------------------


def test_gru_matches_a_grucell_loop_on_sequence_examples():
    context, lengths = _sequence_batch()
    # sequence_examples pads on the right with 0: row b's real items are its first lengths[b].
    assert (context[:, -1] == 0).any() and (lengths < context.shape[1]).any()
    valid = torch.arange(context.shape[1]) < lengths[:, None]
    assert torch.equal(valid, context != 0)  # no real item has id 0 here
    encoder = GRUEncoder(NUM_ITEMS, 4, hidden=5)
    params = _perturbed(rs.init(encoder, seed=0), seed=1)
    expected = _gru_reference(params, context, valid, 5)
    by_padding_id = rs.apply(encoder, params, context)
    by_lengths = rs.apply(encoder, params, context, lengths)
    by_mask = rs.apply(encoder, params, context, mask=valid)
    for out in (by_padding_id, by_lengths, by_mask):
        assert out.shape == (len(context), 5)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_gru_skips_masked_steps_anywhere_as_keras_does():
    # Left padding, a hole in the middle, a full row, an empty row.
    ids = torch.tensor([[0, 0, 3, 4], [5, 0, 6, 0], [1, 2, 3, 4], [0, 0, 0, 0]])
    encoder = GRUEncoder(NUM_ITEMS, 3)
    params = _perturbed(rs.init(encoder, seed=2), seed=3)
    out = rs.apply(encoder, params, ids)
    torch.testing.assert_close(out, _gru_reference(params, ids, ids != 0, 3), rtol=1e-5, atol=1e-6)
    assert torch.equal(out[3], torch.zeros(3))  # no real item: the initial state
    # padding_id=-1 (and pad ids never looked up): the same result with -1 as the filler.
    minus = GRUEncoder(NUM_ITEMS, 3, padding_id=-1)
    torch.testing.assert_close(rs.apply(minus, params, torch.where(ids == 0, -1, ids)), out)


def test_gru_lengths_keep_a_real_id_equal_to_the_pad_id():
    ids = torch.tensor([[0, 7, 0], [0, 0, 0]])  # id 0 is a real item (e.g. a lookup's OOV id)
    lengths = torch.tensor([2, 1])
    encoder = GRUEncoder(NUM_ITEMS, 3)
    params = _perturbed(rs.init(encoder, seed=0), seed=0)
    valid = torch.arange(3) < lengths[:, None]
    out = rs.apply(encoder, params, ids, lengths)
    torch.testing.assert_close(out, _gru_reference(params, ids, valid, 3), rtol=1e-5, atol=1e-6)
    assert not torch.equal(out, rs.apply(encoder, params, ids))  # mask_zero would drop them


def test_gru_init_is_keras_s():
    encoder = GRUEncoder(NUM_ITEMS, 8, hidden=6)
    params = rs.init(encoder, seed=0)
    w_hh = params["weight_hh"]  # [3H, H]: the transpose of Keras's orthogonal [H, 3H] kernel
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(6), atol=1e-5, rtol=0)
    bound = math.sqrt(6 / (8 + 18))  # glorot over Keras's [dim, 3H] kernel
    assert params["weight_ih"].abs().max() <= bound
    assert params["weight_ih"].abs().max() > 0.8 * bound
    assert not params["bias_ih"].any() and not params["bias_hh"].any()
    assert params["embedding"]["weight"].abs().max() <= 0.05
    assert tree.allclose(params, rs.init(encoder, seed=0), rtol=0, atol=0)


def test_gru_errors_name_the_problem():
    encoder = GRUEncoder(NUM_ITEMS, 3)
    params = rs.init(encoder, seed=0)
    ids = torch.tensor([[1, 2, 0]])
    with pytest.raises(TypeError, match=r"GRUEncoder.*ids must be an integer.*float32"):
        rs.apply(encoder, params, ids.float())
    with pytest.raises(ValueError, match=r"ids must be \[B, n\].*\(3,\)"):
        rs.apply(encoder, params, ids[0])
    with pytest.raises(ValueError, match="mask or lengths, not both"):
        rs.apply(encoder, params, ids, torch.tensor([2]), mask=ids != 0)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 3\].*\[4, 4\]"):
        rs.apply(encoder, params, ids, torch.tensor([4]))
    with pytest.raises(ValueError, match=r"lengths must have shape \[1\]"):
        rs.apply(encoder, params, ids, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="mask must be a bool"):
        rs.apply(encoder, params, ids, mask=torch.ones(1, 3))
    with pytest.raises(IndexError, match=r"\[0, 12\)"):
        rs.apply(encoder, params, torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        GRUEncoder(NUM_ITEMS, 3, hidden=0)


# -- TransformerEncoder ---------------------------------------------------------------------------


def _torch_layers(params, dim: int, heads: int, ff: int) -> list[nn.TransformerEncoderLayer]:
    out = []
    for i in sorted(params["layers"], key=int):
        p = params["layers"][i]
        layer = nn.TransformerEncoderLayer(
            dim, heads, ff, dropout=0.0, activation="relu", batch_first=True, norm_first=False
        )
        layer.load_state_dict(
            {
                "self_attn.in_proj_weight": torch.cat(
                    [p["query"]["weight"], p["key"]["weight"], p["value"]["weight"]]
                ),
                "self_attn.in_proj_bias": torch.cat(
                    [p["query"]["bias"], p["key"]["bias"], p["value"]["bias"]]
                ),
                "self_attn.out_proj.weight": p["output"]["weight"],
                "self_attn.out_proj.bias": p["output"]["bias"],
                **{
                    f"{m}.{w}": p[m][w]
                    for m in ("linear1", "linear2", "norm1", "norm2")
                    for w in p[m]
                },
            }
        )
        layer.train()  # no fast path (dropout is 0): the plain masked-attention math
        out.append(layer)
    return out


def _transformer_reference(params, ids, valid, *, dim, heads, ff, pooling):
    x = params["embedding"]["weight"][torch.where(valid, ids, 0)]
    x = x + params["position_embedding"]["weight"][: ids.shape[1]]
    with torch.no_grad():
        for layer in _torch_layers(params, dim, heads, ff):
            x = layer(x, src_key_padding_mask=~valid)
    rows = []
    for b in range(ids.shape[0]):
        real = torch.nonzero(valid[b]).flatten()
        rows.append(x[b, real[-1]] if pooling == "last" else x[b, real].mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_transformer_matches_torch_encoder_layers(pooling):
    context, lengths = _sequence_batch()
    encoder = TransformerEncoder(
        NUM_ITEMS, 8, num_heads=2, num_layers=2, max_len=4, feedforward_dim=16, pooling=pooling
    )
    params = _perturbed(rs.init(encoder, seed=0), seed=5)
    valid = torch.arange(context.shape[1]) < lengths[:, None]
    expected = _transformer_reference(
        params, context, valid, dim=8, heads=2, ff=16, pooling=pooling
    )
    for out in (
        rs.apply(encoder, params, context),
        rs.apply(encoder, params, context, lengths),
        rs.apply(encoder, params, context, mask=valid),
    ):
        assert out.shape == (len(context), 8)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_transformer_padding_never_changes_the_output(pooling):
    ids = torch.tensor([[3, 4, 5, 0, 0], [0, 2, 0, 6, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    valid = ids != 0
    encoder = TransformerEncoder(NUM_ITEMS, 6, num_heads=3, max_len=5, pooling=pooling)
    params = _perturbed(rs.init(encoder, seed=1), seed=2)
    out = rs.apply(encoder, params, ids, mask=valid)
    noisy = torch.where(valid, ids, torch.randint(0, NUM_ITEMS, ids.shape))  # real ids at pads
    torch.testing.assert_close(rs.apply(encoder, params, noisy, mask=valid), out, rtol=0, atol=1e-6)
    assert torch.isfinite(out).all()
    assert torch.equal(out[3], torch.zeros(6))  # no real item
    # Shorter padding (fewer positions) gives the same encoding for right-padded rows.
    torch.testing.assert_close(
        rs.apply(encoder, params, ids[[0, 2], :3]), out[[0, 2]], rtol=1e-5, atol=1e-6
    )


def test_transformer_errors_and_init():
    with pytest.raises(ValueError, match=r"dim \(6\) must be divisible by num_heads \(4\)"):
        TransformerEncoder(NUM_ITEMS, 6, num_heads=4, max_len=3)
    with pytest.raises(ValueError, match="pooling must be"):
        TransformerEncoder(NUM_ITEMS, 6, max_len=3, pooling="max")
    encoder = TransformerEncoder(NUM_ITEMS, 4, max_len=3)
    params = rs.init(encoder, seed=0)
    with pytest.raises(ValueError, match="4 positions, more than max_len=3"):
        rs.apply(encoder, params, torch.tensor([[1, 2, 3, 4]]))
    with pytest.raises(TypeError, match="integer"):
        rs.apply(encoder, params, torch.tensor([[1.0, 2.0]]))
    layer = params["layers"]["0"]
    assert torch.equal(layer["norm1"]["weight"], torch.ones(4))
    assert not layer["query"]["bias"].any()
    assert params["position_embedding"]["weight"].abs().max() <= 0.05


# -- transforms -----------------------------------------------------------------------------------


ENCODERS = {
    "gru": lambda: GRUEncoder(NUM_ITEMS, 4, hidden=3),
    "transformer": lambda: TransformerEncoder(NUM_ITEMS, 4, num_layers=1, max_len=3),
}


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_grad_through_apply_matches_autograd(kind):
    encoder = ENCODERS[kind]()
    context, lengths = _sequence_batch()
    params = _perturbed(rs.init(encoder, seed=0), seed=1)
    weights = torch.linspace(-1, 1, encoder.output_dim)

    def loss(p):
        return (rs.apply(encoder, p, context, lengths) * weights).sum()

    grads = torch.func.grad(loss)(params)
    leaves = tree.map(lambda x: x.clone().requires_grad_(True), params)
    flat = tree.leaves(leaves)
    expected = torch.autograd.grad(loss(leaves), flat)
    for got, want in zip(tree.leaves(grads), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in tree.leaves(grads))


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_vmap_over_stacked_params_matches_each_config(kind):
    encoder = ENCODERS[kind]()
    context, lengths = _sequence_batch()
    configs = [_perturbed(rs.init(encoder, seed=s), seed=s) for s in (0, 1)]
    out = torch.vmap(lambda p: rs.apply(encoder, p, context, lengths))(tree.stack(configs))
    for i, p in enumerate(configs):
        torch.testing.assert_close(out[i], rs.apply(encoder, p, context, lengths))
