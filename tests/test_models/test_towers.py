"""FeatureTower, TwoTowerModel and candidate_embeddings_for_table against hand-written towers."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import layers, models, optim, tasks, train, tree
from torchrs_fn.models import FeatureTower, Numeric, TwoTowerModel, candidate_embeddings_for_table

B = 6


def _perturbed(params, seed: int):
    """The init params plus noise, so zero biases are exercised too."""
    g = torch.Generator().manual_seed(seed)
    return tree.map(lambda x: x + 0.2 * torch.randn(x.shape, generator=g), params)


def _query_tower() -> FeatureTower:
    return FeatureTower(
        {
            "user_id": layers.Embedding(10, 4),
            "genres": layers.BagEmbedding(7, 3),
            "zip": layers.HashedEmbedding(16, 2),
            "age": Numeric(width=2, mean=[30.0, 1.0], std=[10.0, 0.5]),
            # int64 timestamps: standardised in float64, so no second is lost to float32.
            "timestamp": Numeric(mean=879_002_500.0, std=2000.0),
        },
        mlp=[8, 5],
    )


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "user_id": torch.randint(0, 10, (B,), generator=g),
        "genres": torch.tensor([[1, 2, 0], [0, 0, 0], [3, 3, 6], [5, 0, 0], [1, 1, 1], [2, 4, 0]]),
        "zip": torch.randint(0, 16, (B,), generator=g),
        "age": torch.rand(B, 2, generator=g) * torch.tensor([50.0, 2.0]),
        "timestamp": torch.arange(B, dtype=torch.int64) * 1001 + 879_000_003,
        "item": torch.tensor([3, 1, 3, 0, 2, 1]),
        "item_genre": torch.tensor([1, 0, 1, 2, 2, 0]),
        "weight": torch.tensor([1.0, 0.5, 2.0, 1.0, 0.0, 1.5]),
        "extra": torch.zeros(B),  # ignored by the towers
    }


def _manual_query(params, batch) -> torch.Tensor:
    """The tutorial's hand-written tower: concatenate the embeddings, then Dense-ReLU-Dense."""
    f = params["features"]
    genres = batch["genres"]
    w = (genres != 0).float()
    bag = (w[..., None] * f["genres"]["weight"][genres]).sum(1) / w.sum(1, keepdim=True).clamp(
        min=1
    )
    age = (batch["age"] - torch.tensor([30.0, 1.0])) / torch.tensor([10.0, 0.5])
    x = torch.cat(
        [
            f["user_id"]["weight"][batch["user_id"]],
            bag,
            f["zip"]["weight"][batch["zip"]],
            age,
            ((batch["timestamp"].double() - 879_002_500.0) / 2000.0)[:, None].float(),
        ],
        dim=1,
    )
    mlp = params["mlp"]["layers"]
    h = torch.relu(x @ mlp["0"]["weight"].T + mlp["0"]["bias"])
    return h @ mlp["1"]["weight"].T + mlp["1"]["bias"]


# -- FeatureTower ---------------------------------------------------------------------------------


def test_feature_tower_matches_manual_concat_and_mlp():
    tower = _query_tower()
    assert tower.input_dim == 4 + 3 + 2 + 2 + 1 and tower.output_dim == 5
    assert tower.feature_names == ("user_id", "genres", "zip", "age", "timestamp")
    params = _perturbed(rs.init(tower, seed=0), seed=1)
    assert set(params) == {"features", "mlp"}
    assert set(params["features"]) == {"user_id", "genres", "zip"}  # numeric: no parameters
    batch = _batch()
    out = rs.apply(tower, params, batch)
    assert out.shape == (B, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, _manual_query(params, batch), rtol=1e-5, atol=1e-5)


def test_feature_tower_without_mlp_is_the_concatenation_in_spec_order():
    tower = FeatureTower({"b": "numeric", "a": layers.Embedding(10, 3)})
    assert tower.output_dim == 4
    params = rs.init(tower, seed=0)
    batch = {"a": torch.tensor([1, 2]), "b": torch.tensor([0.5, -1.0], dtype=torch.float64)}
    expected = torch.cat(
        [batch["b"].float()[:, None], params["features"]["a"]["weight"][batch["a"]]], dim=1
    )
    out = rs.apply(tower, params, batch)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_feature_tower_lengths_feed_a_sequence_encoder():
    encoder = layers.GRUEncoder(9, 4, hidden=3)
    tower = FeatureTower({"context": encoder}, lengths={"context": "context_length"})
    params = _perturbed(rs.init(tower, seed=0), seed=2)
    ids = torch.tensor([[0, 5, 0], [2, 3, 4], [7, 0, 0]])  # a real id 0 in row 0
    lengths = torch.tensor([2, 3, 1])
    out = rs.apply(tower, params, {"context": ids, "context_length": lengths})
    expected = rs.apply(encoder, params["features"]["context"], ids, lengths)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, rs.apply(encoder, params["features"]["context"], ids))


def test_a_shared_table_has_one_parameter_and_summed_gradients():
    table = layers.Embedding(10, 3)
    tower = FeatureTower({"title": table, "previous_title": table})
    params = rs.init(tower, seed=0)
    assert list(params["features"]) == ["title"]  # one table, named after its first use
    batch = {"title": torch.tensor([1, 2]), "previous_title": torch.tensor([2, 2])}
    grads = torch.func.grad(lambda p: rs.apply(tower, p, batch).sum())(params)
    expected = torch.zeros(10, 3)
    expected.index_add_(0, torch.tensor([1, 2, 2, 2]), torch.ones(4, 3))
    torch.testing.assert_close(grads["features"]["title"]["weight"], expected)


def test_feature_tower_errors_name_the_feature():
    tower = _query_tower()
    params = rs.init(tower, seed=0)
    batch = _batch()
    with pytest.raises(KeyError, match="no column 'zip'"):
        rs.apply(tower, params, {k: v for k, v in batch.items() if k != "zip"})
    with pytest.raises(TypeError, match=r"feature 'user_id' \(Embedding\(10, 4\)\) needs integer"):
        rs.apply(tower, params, {**batch, "user_id": batch["user_id"].float()})
    with pytest.raises(ValueError, match=r"'user_id'.*one id per example, \[B\].*\(6, 1\)"):
        rs.apply(tower, params, {**batch, "user_id": batch["user_id"][:, None]})
    with pytest.raises(ValueError, match=r"'genres'.*padded ids \[B, L\].*use an Embedding"):
        rs.apply(tower, params, {**batch, "genres": batch["genres"][:, 0]})
    with pytest.raises(ValueError, match=r"numeric feature 'age'.*\[B, 2\].*\(6, 3\)"):
        rs.apply(tower, params, {**batch, "age": torch.zeros(B, 3)})
    with pytest.raises(TypeError, match="numeric feature 'age' must be real"):
        rs.apply(tower, params, {**batch, "age": torch.zeros(B, 2, dtype=torch.complex64)})
    with pytest.raises(ValueError, match="batch sizes differ.*'timestamp': 5"):
        rs.apply(tower, params, {**batch, "timestamp": batch["timestamp"][:5]})
    with pytest.raises(TypeError, match=r"feature 'x'.*spec must be"):
        FeatureTower({"x": 3})
    with pytest.raises(TypeError, match="feature 'x'.*output_dim"):
        FeatureTower({"x": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match="without '.'"):
        FeatureTower({"a.b": "numeric"})
    with pytest.raises(ValueError, match="'user_id', which is not a list feature"):
        FeatureTower({"user_id": layers.Embedding(3, 2)}, lengths={"user_id": "n"})
    with pytest.raises(ValueError, match="std must be > 0"):
        Numeric(std=0.0)
    with pytest.raises(ValueError, match="mean must be a float or 2 floats"):
        Numeric(width=2, mean=[1.0, 2.0, 3.0])


# -- TwoTowerModel --------------------------------------------------------------------------------


def _model(**kwargs) -> TwoTowerModel:
    candidates = FeatureTower(
        {"item": layers.Embedding(4, 6), "item_genre": layers.Embedding(3, 2)}, mlp=[5]
    )
    return TwoTowerModel(_query_tower(), candidates, **kwargs)


def test_two_tower_loss_is_the_retrieval_loss_of_both_towers():
    model = _model()
    params = _perturbed(rs.init(model, seed=0), seed=3)
    assert set(params) == {"query_tower", "candidate_tower"}
    batch = _batch()
    query = rs.apply(model.query_tower, params["query_tower"], batch)
    candidates = rs.apply(model.candidate_tower, params["candidate_tower"], batch)
    expected = tasks.retrieval_loss(query, candidates, fused=False)
    torch.testing.assert_close(rs.apply(model, params, batch), expected)
    torch.testing.assert_close(
        rs.apply(model, params, batch, method="query_embeddings"), query, rtol=0, atol=0
    )
    torch.testing.assert_close(
        rs.apply(model, params, batch, method="candidate_embeddings"), candidates, rtol=0, atol=0
    )
    torch.testing.assert_close(
        query, _manual_query(params["query_tower"], batch), atol=1e-5, rtol=1e-5
    )


def test_two_tower_passes_ids_weights_and_the_temperature_to_the_task():
    model = _model(
        task=tasks.Retrieval(remove_accidental_hits=True),
        candidate_id_feature="item",
        sample_weight_feature="weight",
    )
    params = _perturbed(rs.init(model, seed=0), seed=4)
    batch = _batch()
    query = rs.apply(model, params, batch, method="query_embeddings")
    candidates = rs.apply(model, params, batch, method="candidate_embeddings")
    expected = tasks.retrieval_loss(
        query,
        candidates,
        candidate_ids=batch["item"],
        sample_weight=batch["weight"],
        temperature=0.5,
        fused=False,
    )
    got = rs.apply(model, params, batch, hparams={"temperature": torch.tensor(0.5)})
    torch.testing.assert_close(got, expected)
    without_hits = tasks.retrieval_loss(
        query, candidates, sample_weight=batch["weight"], temperature=0.5
    )
    assert not torch.allclose(got, without_hits)  # the batch has duplicate items: hits matter


def test_two_tower_errors():
    with pytest.raises(ValueError, match="candidate_id_feature"):
        _model(task=tasks.Retrieval(remove_accidental_hits=True))
    with pytest.raises(ValueError, match="output widths differ: query_tower 5, candidate_tower 3"):
        TwoTowerModel(_query_tower(), FeatureTower({"item": layers.Embedding(4, 3)}))
    model = _model(sample_weight_feature="w")
    params = rs.init(model, seed=0)
    with pytest.raises(KeyError, match="no column 'w' \\(sample_weight_feature\\)"):
        rs.apply(model, params, _batch())


def test_two_tower_trains_and_grads_match_autograd():
    model = _model(task=tasks.Retrieval(remove_accidental_hits=True), candidate_id_feature="item")
    params = rs.init(model, seed=0)
    batch = _batch()
    loss_fn = models.loss_fn_of(model)
    grads = torch.func.grad(loss_fn)(params, batch)
    leaves = tree.map(lambda x: x.clone().requires_grad_(True), params)
    expected = torch.autograd.grad(loss_fn(leaves, batch), tree.leaves(leaves))
    for got, want in zip(tree.leaves(grads), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    optimizer = optim.adagrad(0.1)
    state = train.init_state(params, optimizer, hparams={"temperature": 1.0})
    step = train.make_train_step(model, optimizer, compile=False)
    losses = []
    for _ in range(8):
        state, logs = step(state, batch)
        losses.append(float(logs["loss"]))
    assert losses[-1] < 0.6 * losses[0]


def test_vmap_over_stacked_tower_params_matches_each_config():
    tower = _query_tower()
    batch = _batch()
    configs = [_perturbed(rs.init(tower, seed=s), seed=s) for s in (0, 1)]
    out = torch.vmap(lambda p: rs.apply(tower, p, batch))(tree.stack(configs))
    for i, p in enumerate(configs):
        torch.testing.assert_close(out[i], rs.apply(tower, p, batch))


@pytest.mark.compile
def test_compiled_tower_matches_eager():
    tower = FeatureTower(
        {"user_id": layers.Embedding(10, 4), "context": layers.GRUEncoder(9, 4)},
        mlp=[4],
        lengths={"context": "n"},
    )
    params = _perturbed(rs.init(tower, seed=0), seed=0)
    batch = {
        "user_id": torch.tensor([1, 2, 3]),
        "context": torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6]]),
        "n": torch.tensor([2, 1, 3]),
    }
    compiled = torch.compile(lambda p, b: rs.apply(tower, p, b), dynamic=False)
    torch.testing.assert_close(compiled(params, batch), rs.apply(tower, params, batch))


# -- candidate_embeddings_for_table ---------------------------------------------------------------


def _catalogue(n: int = 10) -> pa.Table:
    return pa.table(
        {
            "item": pa.array([i % 4 for i in range(n)], pa.int32()),
            "title": [f"movie {i}" for i in range(n)],  # a string column the tower does not use
            "genres": pa.array([[i % 7, (i + 1) % 7] for i in range(n)], pa.list_(pa.int64(), 2)),
            "tags": pa.array([[i % 3, 0, 1] for i in range(n)], pa.list_(pa.int16())),
            "score": pa.array([0.5 * i for i in range(n)], pa.float64()),
        }
    )


def _catalogue_tower() -> FeatureTower:
    return FeatureTower(
        {
            "item": layers.Embedding(4, 3),
            "genres": layers.BagEmbedding(7, 3, "sum"),
            "tags": layers.BagEmbedding(3, 2),
            "score": Numeric(mean=2.0, std=3.0),
        },
        mlp=[6, 5],
    )


def test_candidate_embeddings_in_batches_equal_the_whole_table_at_once():
    model = TwoTowerModel(_query_tower(), _catalogue_tower())
    params = _perturbed(rs.init(model, seed=0), seed=5)
    catalogue = _catalogue(10)
    tensors = {
        "item": torch.tensor(catalogue["item"].to_pylist(), dtype=torch.int64),
        "genres": torch.tensor(catalogue["genres"].to_pylist()),
        "tags": torch.tensor(catalogue["tags"].to_pylist()),
        "score": torch.tensor(catalogue["score"].to_pylist(), dtype=torch.float32),
    }
    at_once = rs.apply(model.candidate_tower, params["candidate_tower"], tensors)
    in_batches = candidate_embeddings_for_table(model, params, catalogue, batch_size=4)  # 4+4+2
    assert in_batches.shape == (10, 5)
    torch.testing.assert_close(in_batches, at_once, rtol=1e-6, atol=1e-6)
    assert not in_batches.requires_grad
    # One batch, a dict of tensors, a tower passed alone with its params: all the same.
    torch.testing.assert_close(
        candidate_embeddings_for_table(model, params, catalogue, batch_size=4096), at_once
    )
    torch.testing.assert_close(
        candidate_embeddings_for_table(model, params, tensors, batch_size=3), at_once
    )
    torch.testing.assert_close(
        candidate_embeddings_for_table(
            model.candidate_tower, params["candidate_tower"], catalogue.to_batches()[0], 7
        ),
        at_once,
    )


def test_candidate_embeddings_for_table_errors():
    tower = _catalogue_tower()
    params = rs.init(tower, seed=0)
    catalogue = _catalogue(5)
    ragged = catalogue.set_column(
        3, "tags", pa.array([[1], [1, 2], [0], [2], [1]], pa.list_(pa.int64()))
    )
    with pytest.raises(ValueError, match=r"column 'tags'.*lengths 1\.\.2.*pad_lists"):
        candidate_embeddings_for_table(tower, params, ragged)
    with pytest.raises(TypeError, match="column 'title' has type string"):
        candidate_embeddings_for_table(tower, params, catalogue, columns=["item", "title"])
    with pytest.raises(KeyError, match=r"no column\(s\) \['score'\]"):
        candidate_embeddings_for_table(tower, params, catalogue.drop_columns(["score"]))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        candidate_embeddings_for_table(tower, params, catalogue, batch_size=0)
    with pytest.raises(ValueError, match="lengths differ"):
        candidate_embeddings_for_table(
            tower,
            params,
            {"item": torch.zeros(3, dtype=torch.long), "score": torch.zeros(2)},
            columns=["item", "score"],
        )
