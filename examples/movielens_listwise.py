"""TFRS's listwise_ranking tutorial, in torchrs_fn, with more of TF-Ranking's losses.

Each training example is a list: 5 movies a user rated, with the ratings as graded relevance
(``data.sample_listwise``: 50 lists per user from the seeded 80% training split, 1 per user from
the 20% test split). A user embedding (32) is concatenated to each movie's title embedding (32)
and an MLP 256-64-1 scores each movie; Adagrad 0.1, batch 8192, 30 epochs. One model per loss:

* ``mean_squared`` (pointwise), ``pairwise_hinge`` and ``list_mle``: the three of the tutorial;
* ``softmax`` and ``approx_ndcg``: two more listwise losses of TF-Ranking.

Reported on the test lists: NDCG over the whole list (TF-Ranking's ``NDCGMetric``), NDCG@3 and
MRR. TFRS's tutorial publishes test NDCG 0.9053 (mean squared), 0.9058 (pairwise hinge) and
0.9071 (ListMLE). MRR counts a label of at least 1 as relevant (TF-Ranking's rule), so with 1-5
star ratings every item is relevant and MRR is 1: it is reported for completeness.

    python examples/movielens_listwise.py                   # table
    python examples/movielens_listwise.py --json            # one JSON line per loss
    python examples/movielens_listwise.py --losses list_mle,softmax --epochs 5
    python examples/movielens_listwise.py --checkpoint-dir ckpt   # ckpt/list_mle, ...: resumable
    python examples/movielens_listwise.py --save-params params.trs  # params.list_mle.trs, ...

Each loss is one run, named after the loss. With ``--checkpoint-dir DIR`` each run checkpoints
into ``DIR/LOSS`` (``DIR/list_mle``, ...) at the end of every epoch (and every
``--checkpoint-every`` steps); started again with the same flags, every run resumes from its
newest valid checkpoint and a finished run is not trained again (``train.Checkpointer``).
``--save-params PATH`` writes each run's trained parameters to ``PATH`` with the loss's name
before the suffix (``params.trs`` -> ``params.list_mle.trs``), with ``torchrs_fn.save_tree``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # the examples' shared --checkpoint-dir / --save-params flags

import torchrs_fn as rs
from torchrs_fn import layers, optim, tasks, train
from torchrs_fn.data import Loader, StringLookup, random_split, sample_listwise
from torchrs_fn.data.datasets import movielens

LOSSES = {
    "mean_squared": tasks.mean_squared_loss,
    "pairwise_hinge": tasks.pairwise_hinge_loss,
    "list_mle": tasks.list_mle_loss,
    "softmax": tasks.softmax_loss,
    "approx_ndcg": tasks.approx_ndcg_loss,
}
TFRS_PUBLISHED_NDCG = {"mean_squared": 0.9053, "pairwise_hinge": 0.9058, "list_mle": 0.9071}
LIST_LENGTH = 5


class ListwiseModel(rs.Model):
    """Scores each movie of a list: MLP(user embedding ++ title embedding) -> ``[B, L]``."""

    def __init__(self, num_users: int, num_titles: int, loss_name: str, dim: int = 32) -> None:
        super().__init__()
        self.user_embeddings = layers.Embedding(num_users, dim)
        self.movie_embeddings = layers.Embedding(num_titles, dim)
        self.score_model = layers.MLP(2 * dim, [256, 64, 1])
        self.task = tasks.Ranking(loss=LOSSES[loss_name], metrics=("ndcg", "ndcg@3", "mrr", "rmse"))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        titles = self.movie_embeddings(batch["movie_title"])  # [B, L, 32]
        users = self.user_embeddings(batch["user_id"])[:, None, :].expand_as(titles)
        return self.score_model(torch.cat([users, titles], dim=-1)).squeeze(-1)  # [B, L]

    def compute_loss(self, batch: dict[str, torch.Tensor], training: bool = False) -> torch.Tensor:
        return self.task.loss(batch["user_rating"], self.predict(batch))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder (or zip) with the GroupLens files")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the lists, the init")
    p.add_argument("--losses", default=",".join(LOSSES), help="comma-separated subset")
    _cli.add_device_and_compile_flags(p, no_compile=False)
    p.add_argument("--json", action="store_true", help="one JSON line per loss")
    _cli.add_checkpoint_flags(p, runs="the loss, e.g. list_mle")
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    args.losses = [name for name in args.losses.split(",") if name]
    unknown = sorted(set(args.losses) - set(LOSSES))
    if unknown:
        p.error(f"unknown losses {unknown}; choose from {list(LOSSES)}")
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def make_lists(ratings: pa.Table, seed: int) -> tuple[pa.Table, pa.Table]:
    """The tutorial's lists: 50 of 5 per user (train split), 1 of 5 per user (test split)."""
    columns = ratings.select(["user_id", "movie_title", "user_rating"])
    train_ratings, test_ratings = random_split(columns, (0.8, 0.2), seed=seed)
    train_lists = sample_listwise(
        train_ratings, num_list_per_user=50, num_examples_per_list=LIST_LENGTH, seed=seed
    )
    test_lists = sample_listwise(
        test_ratings, num_list_per_user=1, num_examples_per_list=LIST_LENGTH, seed=seed
    )
    return train_lists, test_lists


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ratings, _ = movielens.load("100k", data_dir=args.data_dir)
    user_lookup = StringLookup(vocabulary=pc.unique(ratings["user_id"]).sort().to_pylist())
    title_lookup = StringLookup(vocabulary=pc.unique(ratings["movie_title"]).sort().to_pylist())
    train_lists, test_lists = make_lists(ratings, args.seed)

    def encode(lists: pa.Table) -> pa.Table:
        return pa.table(
            {
                "user_id": user_lookup(lists["user_id"]),
                "movie_title": title_lookup(lists["movie_title"]),
                "user_rating": lists["user_rating"].cast(pa.list_(pa.float32(), LIST_LENGTH)),
            }
        )

    train_data, test_data = encode(train_lists), encode(test_lists)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    results = []
    for name in args.losses:
        model = ListwiseModel(user_lookup.vocabulary_size(), title_lookup.vocabulary_size(), name)
        optimizer = optim.adagrad(args.learning_rate)
        step = train.make_train_step(model, optimizer, compile=compile_)
        params = rs.init(model, seed=args.seed, device=device)
        loader = Loader(train_data, args.batch_size, shuffle=True, seed=args.seed, device=device)
        state, history = train.fit(
            step,
            train.init_state(params, optimizer),
            loader,
            epochs=args.epochs,
            verbose=False,
            checkpoint=_cli.checkpointer(args, name),
        )
        _cli.save_params(args, state.params, name)

        def eval_fn(params: rs.Params, batch: dict, model: ListwiseModel = model) -> dict:
            scores = rs.apply(model, params, batch, method="predict")
            return model.task.metrics(batch["user_rating"], scores)

        t0 = time.perf_counter()
        test = train.evaluate(
            train.make_eval_step(eval_fn, compile=False),
            state.params,
            Loader(test_data, args.eval_batch_size, device=device),
        )
        results.append(
            {
                "loss": name,
                "ndcg": test["ndcg"],
                "ndcg_at_3": test["ndcg@3"],
                "mrr": test["mrr"],
                "rmse": test["rmse"],
                "epoch_seconds": [h["epoch_seconds"] for h in history],
                "eval_seconds": time.perf_counter() - t0,
                "tfrs_published_ndcg": TFRS_PUBLISHED_NDCG.get(name),
                "num_train_lists": train_lists.num_rows,
                "num_test_lists": test_lists.num_rows,
                "train_step": getattr(step, "status", "compiled" if compile_ else "eager"),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        for result in results:
            print(json.dumps(result))
        return 0
    first = results[0]
    print(
        f"\nMovieLens 100K listwise ranking: {first['num_train_lists']:,} train lists, "
        f"{first['num_test_lists']:,} test lists of {LIST_LENGTH}, {args.epochs} epochs"
    )
    print(f"{'loss':<16}{'NDCG':>8}{'NDCG@3':>8}{'MRR':>8}{'TFRS NDCG':>11}")
    for r in results:
        published = r["tfrs_published_ndcg"]
        ref = f"{published:.4f}" if published is not None else "—"
        print(f"{r['loss']:<16}{r['ndcg']:>8.4f}{r['ndcg_at_3']:>8.4f}{r['mrr']:>8.4f}{ref:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
