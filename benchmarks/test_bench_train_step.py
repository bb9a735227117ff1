"""pytest-benchmark suite for the hot paths of the MovieLens retrieval recipe.

Shapes are those of the TFRS basic_retrieval tutorial: 944 users, 1,665 titles, 32-d embeddings,
batch 8192, and 20,000 test queries against 1,682 candidates. Run with::

    make bench                       # or: .venv/bin/python -m pytest benchmarks --benchmark-enable

Timings are for comparing variants side by side in one run, on one machine; the suite asserts no
speed (CI never depends on timing) but checks that the variants agree numerically.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchrs_fn as rs
from torchrs_fn import metrics, optim, train
from torchrs_fn.tasks import Retrieval, retrieval_loss

USERS, TITLES, DIM, BATCH = 944, 1665, 32, 8192


class TwoTower(rs.Model):
    def __init__(self) -> None:
        super().__init__()
        self.user_model = nn.Embedding(USERS, DIM)
        self.movie_model = nn.Embedding(TITLES, DIM)
        self.task = Retrieval()

    def compute_loss(self, batch, training=False):
        return self.task(self.user_model(batch["user_id"]), self.movie_model(batch["movie_title"]))


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "user_id": torch.randint(0, USERS, (BATCH,), generator=g),
        "movie_title": torch.randint(0, TITLES, (BATCH,), generator=g),
    }


@pytest.fixture(scope="module")
def setup():
    model = TwoTower()
    params = rs.init(model, seed=0)
    opt = optim.adagrad(0.1)
    return model, params, opt


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_train_step(benchmark, setup, mode):
    model, params, opt = setup
    step = train.make_train_step(model, opt, compile=(mode == "compiled"))
    state = train.init_state(params, opt)
    batch = _batch()
    state, _ = step(state, batch)  # warm-up (compiles)
    benchmark.extra_info["batch"] = BATCH
    _, logs = benchmark(step, state, batch)
    assert torch.isfinite(logs["loss"])


@pytest.mark.parametrize("fused", [True, False])
def test_retrieval_loss_grad(benchmark, fused):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(BATCH, DIM, generator=g) * 0.1
    c = torch.randn(BATCH, DIM, generator=g) * 0.1
    fn = torch.func.grad_and_value(lambda a, b: retrieval_loss(a, b, fused=fused), argnums=(0, 1))
    grads, value = benchmark(fn, q, c)
    assert grads[0].shape == q.shape
    ref = torch.nn.functional.cross_entropy(q @ c.T, torch.arange(BATCH), reduction="sum")
    assert torch.allclose(value, ref, rtol=1e-4)


def test_factorized_top_k_eval(benchmark):
    g = torch.Generator().manual_seed(0)
    queries = torch.randn(20_000, DIM, generator=g)
    candidates = torch.randn(1682, DIM, generator=g)
    positives = torch.randint(0, 1682, (20_000,), generator=g)
    out = benchmark(metrics.factorized_top_k, queries, candidates, positives)
    assert out["top_100"].shape == (20_000,)
