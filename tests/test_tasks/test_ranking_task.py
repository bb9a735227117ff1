"""tasks.Ranking and tasks.MultiTask against Keras's definitions, and their metrics through
train.evaluate against whole-data references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from torchrs_fn import metrics, optim, train
from torchrs_fn.tasks import MultiTask, Ranking, Retrieval, Task, list_mle_loss


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g, dtype=torch.float64)
    labels = (torch.rand(n, generator=g, dtype=torch.float64) < 0.3).to(torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64)
    return labels, logits, w


def test_keras_reductions_by_hand():
    y = torch.tensor([1.0, 3.0, -2.0])  # a negative rating is a rating, not padding
    p = torch.tensor([2.0, 3.0, 0.0])
    w = torch.tensor([1.0, 2.0, 0.5])
    task = Ranking(loss="mean_squared_error")
    # SUM_OVER_BATCH_SIZE: (1*1 + 2*0 + 0.5*4) / 3
    assert task.loss(y, p, w).item() == pytest.approx(3.0 / 3)
    assert task.loss(y[:, None], p[:, None]).item() == pytest.approx(5.0 / 3)


def test_bce_from_logits_and_probabilities_agree_with_torch():
    y, logits, w = _data()
    want = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).mean()
    got = Ranking(loss="binary_crossentropy", from_logits=True).loss(y, logits, w)
    assert torch.allclose(got, want)
    # Probabilities away from 0 and 1: Keras's eps terms change the value by ~1e-7 only.
    got_p = Ranking().loss(y, torch.sigmoid(logits), w)
    assert torch.allclose(got_p, want, atol=1e-6)


@pytest.mark.parametrize(
    ("loss", "from_logits"),
    [("mean_squared_error", False), ("binary_crossentropy", True), ("binary_crossentropy", False)],
)
def test_bfloat16_predictions_give_the_float32_loss(loss, from_logits):
    """Mixed precision: bfloat16 predictions (a model under autocast) and bfloat16 labels give
    the float32 loss of the same values, bit for bit, as Keras computes losses in float32."""
    y, logits, w = _data(64, seed=4)
    p = (logits if from_logits else torch.sigmoid(logits)).bfloat16()
    task = Ranking(loss=loss, from_logits=from_logits)
    got = task.loss(y.bfloat16(), p, w.float())
    want = task.loss(y.float(), p.float(), w.float())
    assert got.dtype == torch.float32
    assert torch.equal(got, want)


def test_callable_loss_gets_lists_mask_and_weights():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 5, generator=g)
    labels = torch.randint(0, 3, (4, 5), generator=g).float()
    mask = torch.rand(4, 5, generator=g) > 0.2
    task = Ranking(loss=list_mle_loss, metrics=("ndcg", "ndcg@3", "mrr"))
    assert torch.equal(
        task.loss(labels, scores, mask=mask), list_mle_loss(scores, labels, mask=mask)
    )
    out = task.metrics(labels, scores, mask=mask)
    assert set(out) == {"ndcg", "ndcg@3", "mrr"}
    values, weights = out["ndcg@3"]
    want = metrics.ndcg(scores, labels, mask=mask, topn=3)
    assert torch.allclose((values * weights).sum() / weights.sum(), want)


def test_bad_input_is_named():
    task = Ranking(loss="mean_squared_error")
    with pytest.raises(ValueError, match=r"\[B\] or \[B, 1\]"):
        task.loss(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="sample_weight"):
        task.loss(torch.zeros(4), torch.zeros(4), torch.ones(3))
    with pytest.raises(ValueError, match="predictions contains NaN"):
        task.loss(torch.zeros(3), torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="mask applies to list losses"):
        task.loss(torch.zeros(3), torch.zeros(3), mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="loss must be one of"):
        Ranking(loss="hinge")
    with pytest.raises(ValueError, match="unknown metric 'rmse@3'"):
        Ranking(metrics=("rmse@3",))
    with pytest.raises(TypeError, match="sequence of names"):
        Ranking(metrics="rmse")


def test_tasks_implement_the_task_interface():
    assert isinstance(Ranking(), Task) and isinstance(Retrieval(), Task)
    assert isinstance(MultiTask({"a": Ranking()}), Task)


def test_evaluate_accumulates_rmse_and_auc_exactly_over_batches():
    y, logits, w = _data(n=103, seed=3)
    ratings = logits * 2 + 3
    task = Ranking(
        loss="binary_crossentropy",
        from_logits=True,
        metrics=("auc", "log_loss", "binary_accuracy"),
    )
    rating_task = Ranking(loss="mean_squared_error", metrics=("rmse", "mae"))
    batches = [
        {
            "y": y[i : i + 10],
            "logits": logits[i : i + 10],
            "r": ratings[i : i + 10],
            "w": w[i : i + 10],
        }
        for i in range(0, 103, 10)
    ]

    def eval_fn(params, batch):
        return {
            **task.metrics(batch["y"], batch["logits"], batch["w"]),
            **rating_task.metrics(batch["y"] * 4 + 1, batch["r"], batch["w"]),
        }

    got = train.evaluate(train.make_eval_step(eval_fn, compile=False), {}, batches)
    # Whole-data references.
    want_auc = metrics.auc(torch.sigmoid(logits), y, weights=w).item()
    want_rmse = math.sqrt(((ratings - (y * 4 + 1)) ** 2 * w).sum().item() / w.sum().item())
    assert got["auc"] == pytest.approx(want_auc, abs=1e-12)
    assert got["rmse"] == pytest.approx(want_rmse, rel=1e-12)
    assert got["mae"] == pytest.approx(metrics.mae(ratings, y * 4 + 1, weights=w).item(), rel=1e-12)
    want_log_loss = metrics.log_loss(logits, y, weights=w, from_logits=True).item()
    assert got["log_loss"] == pytest.approx(want_log_loss, rel=1e-12)


def test_multitask_weights_come_from_the_state_and_a_sweep_varies_them():
    g = torch.Generator().manual_seed(0)
    params = {"user": torch.randn(10, 4, generator=g), "item": torch.randn(12, 4, generator=g)}
    batch = {
        "user_id": torch.randint(0, 10, (6,), generator=g),
        "item_id": torch.randint(0, 12, (6,), generator=g),
        "rating": torch.randint(1, 6, (6,), generator=g).float(),
    }
    mt = MultiTask(
        {"rating": Ranking(loss="mean_squared_error"), "retrieval": Retrieval()},
        weights={"rating": 1.0, "retrieval": 0.0},
    )

    def loss_fn(p, b, hparams):
        q, c = p["user"][b["user_id"]], p["item"][b["item_id"]]
        return mt.loss({"rating": (b["rating"], (q * c).sum(1)), "retrieval": (q, c)}, hparams)

    opt = optim.sgd(0.1)
    step = train.make_train_step(loss_fn, opt, compile=False)
    state = train.init_state(params, opt, hparams=mt.hparams())
    assert set(state.hparams) == {"task_weight/rating", "task_weight/retrieval"}
    _, logs = step(state, batch)
    q, c = params["user"][batch["user_id"]], params["item"][batch["item_id"]]
    rating = (((q * c).sum(1) - batch["rating"]) ** 2).mean()
    assert torch.allclose(logs["loss"], rating)  # retrieval weighs 0
    assert torch.allclose(logs["rating_loss"], rating)
    assert torch.allclose(logs["retrieval_loss"], Retrieval()(q, c))
    # Three weightings at once: vmap over the state's weights.
    states = train.stack_states(
        [
            train.init_state(
                params, opt, hparams={"task_weight/rating": a, "task_weight/retrieval": b}
            )
            for a, b in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
        ]
    )
    _, logs3 = torch.vmap(step, in_dims=(0, None))(states, batch)
    total = torch.stack([rating, Retrieval()(q, c), rating + Retrieval()(q, c)])
    assert torch.allclose(logs3["loss"], total, rtol=1e-5)


def test_multitask_errors():
    with pytest.raises(ValueError, match="empty"):
        MultiTask({})
    with pytest.raises(ValueError, match="unknown tasks"):
        MultiTask({"a": Ranking()}, weights={"b": 1.0})
    mt = MultiTask({"a": Ranking(), "b": Ranking()})
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        mt.loss({"a": (torch.zeros(2), torch.full((2,), 0.5))})
