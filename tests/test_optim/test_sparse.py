"""Row-sparse embedding updates (``optim.sparse``, ``make_train_step(sparse_tables=...)``).

References: ``torch.unique`` for the compaction; the dense step (plain autograd over the whole
table) for SGD, Adagrad and row-wise Adagrad; a lazy Adam written here row by row (TensorFlow's
``LazyAdam`` rule) for Adam; the dense step under ``vmap``, ``torch.compile`` and an outer
``torch.func.grad``.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import layers, optim, tree
from torchrs_fn.models import FeatureTower, TwoTowerModel
from torchrs_fn.tasks import retrieval_loss
from torchrs_fn.train import init_state, make_train_step

V, D, B = 50, 4, 12


def _params(seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "user": torch.randn(V, D, generator=g, dtype=dtype) * 0.1,
        "item": torch.randn(V, D, generator=g, dtype=dtype) * 0.1,
        "proj": torch.randn(D, D, generator=g, dtype=dtype) * 0.3,
    }


def _loss(params, batch):
    # The item table is read through two columns: the positive item and a padded history
    # (0 = padding, masked out as mask_zero embeddings do).
    history = batch["history"]
    mask = (history != 0).unsqueeze(-1).to(params["item"].dtype)
    pooled = (params["item"][history] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    query = (params["user"][batch["user_id"]] + pooled) @ params["proj"]
    return retrieval_loss(query, params["item"][batch["item_id"]])


def _batches(n: int, seed: int = 1) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        # Power-law-ish ids so that batches repeat ids; history rows padded with 0.
        raw = torch.randint(1, V, (B, 3), generator=g)
        history = torch.where(torch.rand(B, 3, generator=g) < 0.4, 0, raw)
        out.append(
            {
                "user_id": torch.randint(0, V // 3, (B,), generator=g),
                "item_id": (torch.rand(B, generator=g) ** 3 * V).long(),
                "history": history,
            }
        )
    return out


SPARSE = {"user": "user_id", "item": ["item_id", "history"]}


# -- unique_ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_unique_ids_matches_torch_unique(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(-2, 9, (4, 5), generator=g)
    r = optim.unique_ids(ids)
    assert r.ids.shape == (21,) and r.valid.shape == (21,) and r.inverse.shape == ids.shape
    real = ids[ids >= 0]
    distinct = torch.unique(real)
    # Slot 0 holds id 0 always; it counts as valid only when the batch holds id 0.
    expected = torch.unique(torch.cat([torch.zeros(1, dtype=ids.dtype), distinct]))
    n = expected.numel()
    assert torch.equal(r.ids[:n], expected)
    assert torch.equal(r.ids[n:], torch.zeros(21 - n, dtype=torch.int64))
    assert torch.equal(r.ids[r.valid], distinct)
    mapped = r.ids[r.inverse.clamp(min=0)]
    assert torch.equal(torch.where(ids >= 0, mapped, ids), ids)
    assert torch.equal(r.inverse[ids < 0], ids[ids < 0])  # padding passes through


def test_unique_ids_rejects_float_ids():
    with pytest.raises(TypeError, match="integer"):
        optim.unique_ids(torch.tensor([1.0, 2.0]))


# -- equal to the dense step ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim.sgd(0.3),
        lambda: optim.adagrad(0.2),
        lambda: optim.rowwise_adagrad(0.2),
        lambda: optim.chain(optim.clip_by_global_norm(0.5), optim.adagrad(0.2)),
        lambda: optim.partition(
            {"emb": optim.adagrad(0.2), "rest": optim.sgd(0.1)},
            optim.label_by_path(lambda p: "rest" if p == "proj" else "emb"),
        ),
    ],
    ids=["sgd", "adagrad", "rowwise_adagrad", "clip+adagrad", "partition"],
)
def test_sparse_step_equals_dense_step(make):
    opt = make()
    dense = make_train_step(_loss, opt, compile=False)
    sparse = make_train_step(_loss, opt, compile=False, sparse_tables=SPARSE)
    a = init_state(_params(dtype=torch.float64), opt)
    b = init_state(_params(dtype=torch.float64), opt)
    for batch in _batches(6):
        a, la = dense(a, batch)
        b, lb = sparse(b, batch)
        torch.testing.assert_close(lb["loss"], la["loss"], rtol=1e-12, atol=1e-12)
    for x, y in zip(tree.leaves((a.params, a.opt_state)), tree.leaves((b.params, b.opt_state))):
        torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)


def test_rowwise_adagrad_follows_its_formula():
    # Dense reference by hand: acc[v] += mean_d g[v, d]^2; p -= lr g / (sqrt(acc) + eps).
    g = torch.Generator().manual_seed(3)
    p = torch.randn(6, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(3, generator=g, dtype=torch.float64)
    opt = optim.rowwise_adagrad(0.1, initial_accumulator_value=0.05, epsilon=1e-6)
    state = opt.init({"w": p, "b": bias})
    assert state.sum_of_squares["w"].shape == (6,) and state.sum_of_squares["b"].shape == (3,)
    acc_w, acc_b = torch.full((6,), 0.05, dtype=torch.float64), torch.full((3,), 0.05)
    want_w, want_b, params = p.clone(), bias.clone(), {"w": p, "b": bias}
    for _ in range(4):
        gw = torch.randn(6, 3, generator=g, dtype=torch.float64)
        gw[2] = 0.0  # an untouched row does not move
        gb = torch.randn(3, generator=g, dtype=torch.float64)
        updates, state = opt.update({"w": gw, "b": gb}, state, params)
        params = optim.apply_updates(params, updates)
        acc_w = acc_w + (gw**2).mean(1)
        acc_b = acc_b + gb**2
        want_w = want_w - 0.1 * gw / (acc_w.sqrt()[:, None] + 1e-6)
        want_b = want_b - 0.1 * gb / (acc_b.sqrt() + 1e-6)
    torch.testing.assert_close(params["w"], want_w)
    torch.testing.assert_close(params["b"], want_b.to(torch.float64))
    torch.testing.assert_close(params["w"][2], p[2])


@pytest.mark.parametrize("weight_decay", [None, 0.1])
def test_sparse_adam_is_lazy_adam(weight_decay):
    lr, b1, b2, eps = 0.05, 0.9, 0.99, 1e-8
    opt = (
        optim.adam(lr, b1, b2, eps)
        if weight_decay is None
        else optim.adamw(lr, b1, b2, eps, weight_decay=weight_decay)
    )
    sparse = make_train_step(_loss, opt, compile=False, sparse_tables=SPARSE)
    state = init_state(_params(dtype=torch.float64), opt)
    # The state holds hyperparameters as float32: the reference uses the same rounded values.
    lr, b1, b2, eps = (float(torch.tensor(v, dtype=torch.float32)) for v in (lr, b1, b2, eps))
    if weight_decay is not None:
        weight_decay = float(torch.tensor(weight_decay, dtype=torch.float32))
    # Reference: dense gradients by autograd; the tables' rows the batch holds move with Adam's
    # formula at the global step count, every other row (and its moments) stays put.
    ref = {k: v.clone() for k, v in _params(dtype=torch.float64).items()}
    mu = {k: torch.zeros_like(v) for k, v in ref.items()}
    nu = {k: torch.zeros_like(v) for k, v in ref.items()}
    for t, batch in enumerate(_batches(5), start=1):
        grads = torch.func.grad(_loss)(ref, batch)
        touched = {
            "user": torch.unique(batch["user_id"]),
            "item": torch.unique(torch.cat([batch["item_id"], batch["history"].reshape(-1)])),
            "proj": slice(None),
        }
        for k in ref:
            rows = touched[k]
            mu[k][rows] = b1 * mu[k][rows] + (1 - b1) * grads[k][rows]
            nu[k][rows] = b2 * nu[k][rows] + (1 - b2) * grads[k][rows] ** 2
            # Bias corrections in float32, as the optimizer computes them from its state.
            t32 = torch.tensor(float(t))
            c1, c2 = (float(1.0 - torch.pow(torch.tensor(b), t32)) for b in (b1, b2))
            m_hat, v_hat = mu[k][rows] / c1, nu[k][rows] / c2
            new = ref[k][rows] - lr * m_hat / (v_hat.sqrt() + eps)
            if weight_decay is not None:
                new = new - lr * weight_decay * ref[k][rows]
            ref[k][rows] = new
        state, _ = sparse(state, batch)
    for k in ref:
        # float32 hyperparameter arithmetic (lr * weight_decay) leaves ~1e-8 relative; a dense
        # (non-lazy) update would be off by ~1e-3.
        torch.testing.assert_close(state.params[k], ref[k], rtol=1e-7, atol=1e-9)


def test_two_tower_model_on_movielens_rows(ml100k_dir):
    # A real TwoTowerModel (FeatureTower embeddings) on MovieLens 100K interactions.
    import numpy as np

    data = np.loadtxt(ml100k_dir / "u.data", dtype=np.int64)[:2048]
    users, items = torch.from_numpy(data[:, 0]), torch.from_numpy(data[:, 1])
    model = TwoTowerModel(
        FeatureTower({"user_id": layers.Embedding(944, 8)}),
        FeatureTower({"item_id": layers.Embedding(1683, 8)}),
    )
    opt = optim.adagrad(0.1)
    sparse_tables = {
        "query_tower.features.user_id.weight": "user_id",
        "candidate_tower.features.item_id.weight": "item_id",
    }
    dense = make_train_step(model, opt, compile=False)
    sparse = make_train_step(model, opt, compile=False, sparse_tables=sparse_tables)
    a = init_state(rs.init(model, seed=0), opt)
    b = init_state(rs.init(model, seed=0), opt)
    before = b.params["candidate_tower"]["features"]["item_id"]["weight"].clone()
    for start in range(0, 2048, 256):
        batch = {"user_id": users[start : start + 256], "item_id": items[start : start + 256]}
        a, _ = dense(a, batch)
        b, _ = sparse(b, batch)
    for x, y in zip(tree.leaves(a), tree.leaves(b)):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-7)
    moved = (b.params["candidate_tower"]["features"]["item_id"]["weight"] != before).any(1)
    assert torch.equal(moved.nonzero().flatten(), torch.unique(items))


# -- the state is consumed; transforms ------------------------------------------------------------


def test_sparse_step_writes_the_tables_in_place():
    opt = optim.adagrad(0.1)
    step = make_train_step(_loss, opt, compile=False, sparse_tables=SPARSE)
    state = init_state(_params(), opt)
    table, acc = state.params["item"], state.opt_state.sum_of_squares["item"]
    new, _ = step(state, _batches(1)[0])
    assert new.params["item"] is table and new.opt_state.sum_of_squares["item"] is acc
    assert new.params["proj"] is not state.params["proj"]  # dense leaves are new tensors


def test_sparse_step_under_vmap_equals_per_config_dense_steps():
    opt = optim.adagrad(0.1)
    dense = make_train_step(_loss, opt, compile=False)
    sparse = torch.vmap(
        make_train_step(_loss, opt, compile=False, sparse_tables=SPARSE), in_dims=(0, None)
    )
    configs = [
        init_state(_params(seed), opt)._replace(
            opt_state=optim.set_hparams(
                init_state(_params(seed), opt).opt_state, {"learning_rate": lr}
            )
        )
        for seed, lr in ((0, 0.1), (1, 0.4))
    ]
    stacked, refs = tree.stack(configs), list(configs)
    for batch in _batches(3):
        stacked, _ = sparse(stacked, batch)
        refs = [dense(s, batch)[0] for s in refs]
    for got, want in zip(tree.unstack(stacked), refs):
        for x, y in zip(tree.leaves(want.params), tree.leaves(got.params)):
            torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-7)


def test_sparse_step_compiled_equals_dense_eager():
    opt = optim.adagrad(0.1)
    dense = make_train_step(_loss, opt, compile=False)
    sparse = make_train_step(_loss, opt, compile=True, sparse_tables=SPARSE)
    a, b = init_state(_params(), opt), init_state(_params(), opt)
    for batch in _batches(3):
        a, _ = dense(a, batch)
        b, _ = sparse(b, batch)
    for x, y in zip(tree.leaves(a), tree.leaves(b)):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [optim.sgd, optim.adagrad, optim.rowwise_adagrad])
def test_hypergradient_through_sparse_steps_equals_dense(make):
    # An outer grad through three steps with respect to the learning rate: the writes are out of
    # place under the outer transform, and each row's gradient reaches it once (the unused slots
    # repeat row 0), so the derivative is the dense one.
    batches = _batches(3)

    def final_loss(lr, sparse_tables):
        opt = make(0.1)
        step = make_train_step(_loss, opt, compile=False, sparse_tables=sparse_tables)
        state = init_state(_params(dtype=torch.float64), opt)
        state = state._replace(opt_state=optim.set_hparams(state.opt_state, {"learning_rate": lr}))
        for batch in batches:
            state, _ = step(state, batch)
        return _loss(state.params, batches[0])

    lr = torch.tensor(0.3, dtype=torch.float64)
    want = torch.func.grad(final_loss)(lr, None)
    got = torch.func.grad(final_loss)(lr, SPARSE)
    assert want.abs() > 0
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [range(V - 5, V), range(0, 5)], ids=["beyond-view", "inside-view"]
)
def test_loss_that_looks_up_ids_outside_the_columns_is_an_error(extra):
    # Sampled negatives the batch columns do not hold: ids past the view's rows fail to index;
    # small ids would index the wrong rows silently, and the first call's comparison with the
    # dense loss catches them.
    extra = torch.tensor(list(extra))

    def sampled_negatives(params, batch):
        candidates = torch.cat([params["item"][batch["item_id"]], params["item"][extra]])
        return retrieval_loss(params["user"][batch["user_id"]], candidates)

    opt = optim.sgd(0.1)
    step = make_train_step(
        sampled_negatives, opt, compile=False, sparse_tables={"user": "user_id", "item": "item_id"}
    )
    batch = {"user_id": torch.arange(10, 40), "item_id": torch.arange(10, 40)}
    with pytest.raises(ValueError, match="batch columns named for it"):
        step(init_state(_params(), opt), batch)


@pytest.mark.parametrize(
    ("tables", "batch", "error", "match"),
    [
        ({"nope": "user_id"}, None, KeyError, "not a parameter"),
        ({"user": "missing"}, None, KeyError, "no column 'missing'"),
        ({"user": "user_id", "item": ["user_id"]}, None, ValueError, "two sparse tables"),
        ({"user": []}, None, TypeError, "one or more batch columns"),
        ({"user": "user_id"}, {"user_id": torch.tensor([V + 3])}, IndexError, "holds id 53"),
    ],
)
def test_bad_sparse_tables_are_named(tables, batch, error, match):
    def loss(params, batch):
        return params["user"][batch["user_id"].clamp(max=V - 1)].sum()

    opt = optim.sgd(0.1)
    with pytest.raises(error, match=match):
        step = make_train_step(loss, opt, compile=False, sparse_tables=tables)
        step(init_state(_params(), opt), batch or {"user_id": torch.arange(4)})


def test_rowwise_adagrad_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="learning_rate"):
        optim.rowwise_adagrad(-1.0)
    assert math.isclose(
        float(optim.rowwise_adagrad(0.5).init({"w": torch.ones(2, 2)}).hparams["learning_rate"]),
        0.5,
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_sparse_step_on_cuda_equals_dense_step_on_cpu(compile):
    # The row view on a GPU (gather, in-place index_put_ of the unique rows, optimizer slots),
    # eager in float64 and compiled in float32, against the dense step on the CPU.
    opt = optim.chain(optim.clip_by_global_norm(0.5), optim.adagrad(0.2))
    dtype, tol = (torch.float32, 1e-5) if compile else (torch.float64, 1e-12)
    dense = make_train_step(_loss, opt, compile=False)
    sparse = make_train_step(_loss, opt, compile=compile, sparse_tables=SPARSE)
    a = init_state(_params(dtype=dtype), opt)
    b = init_state(tree.map(lambda x: x.cuda(), _params(dtype=dtype)), opt)
    for batch in _batches(4):
        a, la = dense(a, batch)
        b, lb = sparse(b, {k: v.cuda() for k, v in batch.items()})
        torch.testing.assert_close(lb["loss"].cpu(), la["loss"], rtol=tol, atol=tol)
    for x, y in zip(tree.leaves((a.params, a.opt_state)), tree.leaves((b.params, b.opt_state))):
        assert y.is_cuda
        torch.testing.assert_close(y.cpu(), x, rtol=tol, atol=tol)
