"""TFRS's basic_ranking tutorial, in torchrs_fn.

Predicts a user's rating of a movie on MovieLens 100K: a user-id embedding and a movie-title
embedding of dimension 32, concatenated and passed through an MLP 256-64-1 (relu), trained with
the mean squared error (``tasks.Ranking(loss="mean_squared_error")``), Adagrad 0.1, batch 8192,
3 epochs, on a seeded 80/20 random split; evaluated with the test RMSE. TFRS's tutorial reports
a test RMSE of about 1.11.

    python examples/movielens_ranking.py                # readable table
    python examples/movielens_ranking.py --json         # one JSON line: rmse, epoch_seconds, ...
    python examples/movielens_ranking.py --data-dir ../shared/data/ml-100k
    python examples/movielens_ranking.py --checkpoint-dir ckpt       # resumes if stopped
    python examples/movielens_ranking.py --save-params params.trs

With ``--checkpoint-dir`` the run saves a checkpoint at the end of every epoch (and every
``--checkpoint-every`` steps) and, started again with the same flags, resumes from the newest
valid one (``train.Checkpointer``); a run that already finished resumes straight to evaluation.
``--save-params`` writes the trained parameters with ``torchrs_fn.save_tree``.
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
from torchrs_fn import layers, optim, train
from torchrs_fn.data import Loader, StringLookup, random_split
from torchrs_fn.data.datasets import movielens
from torchrs_fn.tasks import Ranking

TFRS_RMSE = 1.11  # the tutorial's published test RMSE


class RankingModel(rs.Model):
    """Embeddings of the user and the title, concatenated, then MLP 256-64-1: a rating."""

    def __init__(self, num_users: int, num_titles: int, embedding_dim: int = 32) -> None:
        super().__init__()
        self.user_embeddings = layers.Embedding(num_users, embedding_dim)
        self.movie_embeddings = layers.Embedding(num_titles, embedding_dim)
        self.ratings = layers.MLP(2 * embedding_dim, [256, 64, 1])
        self.task = Ranking(loss="mean_squared_error", metrics=("rmse",))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` predicted ratings."""
        features = torch.cat(
            [self.user_embeddings(batch["user_id"]), self.movie_embeddings(batch["movie_title"])],
            dim=-1,
        )
        return self.ratings(features).squeeze(-1)

    def compute_loss(self, batch: dict[str, torch.Tensor], training: bool = False) -> torch.Tensor:
        return self.task.loss(batch["user_rating"], self.predict(batch))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", default=None, help="folder (or ml-100k.zip) with the GroupLens files"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the shuffle and the init")
    _cli.add_device_and_compile_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    _cli.add_checkpoint_flags(p)
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ratings, _ = movielens.load("100k", data_dir=args.data_dir)

    # As in the tutorial: vocabularies are the sorted unique user ids and rated movie titles.
    user_lookup = StringLookup(vocabulary=pc.unique(ratings["user_id"]).sort().to_pylist())
    title_lookup = StringLookup(vocabulary=pc.unique(ratings["movie_title"]).sort().to_pylist())
    train_table, test_table = random_split(
        ratings.select(["user_id", "movie_title", "user_rating"]), (0.8, 0.2), seed=args.seed
    )

    def featurize(table: pa.Table) -> pa.Table:
        return pa.table(
            {
                "user_id": user_lookup(table["user_id"]),
                "movie_title": title_lookup(table["movie_title"]),
                "user_rating": pc.cast(table["user_rating"], pa.float32()),
            }
        )

    train_loader = Loader(
        featurize(train_table), args.batch_size, shuffle=True, seed=args.seed, device=device
    )
    test_loader = Loader(featurize(test_table), args.eval_batch_size, device=device)

    model = RankingModel(
        user_lookup.vocabulary_size(), title_lookup.vocabulary_size(), args.embedding_dim
    )
    params = rs.init(model, seed=args.seed, device=device)
    optimizer = optim.adagrad(args.learning_rate)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    train_step = train.make_train_step(model, optimizer, compile=compile_)

    def eval_fn(params: rs.Params, batch: dict) -> dict:
        predictions = rs.apply(model, params, batch, method="predict")
        return model.task.metrics(batch["user_rating"], predictions)

    eval_step = train.make_eval_step(eval_fn, compile=compile_)
    state, history = train.fit(
        train_step,
        train.init_state(params, optimizer),
        train_loader,
        epochs=args.epochs,
        verbose=not args.json,
        checkpoint=_cli.checkpointer(args),
    )
    _cli.save_params(args, state.params)
    t0 = time.perf_counter()
    test_metrics = train.evaluate(eval_step, state.params, test_loader)
    eval_seconds = time.perf_counter() - t0
    return {
        "rmse": test_metrics["rmse"],
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "epoch_cpu_seconds": [h["epoch_cpu_seconds"] for h in history],
        "train_loss": [h["loss"] for h in history],
        "eval_seconds": eval_seconds,
        "tfrs_rmse": TFRS_RMSE,
        "num_train": train_table.num_rows,
        "num_test": test_table.num_rows,
        "device": str(device),
        "compile": args.compile,
        "train_step": getattr(train_step, "status", "compiled" if compile_ else "eager"),
        "seed": args.seed,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"\nMovieLens 100K basic ranking ({result['num_train']:,} train / "
        f"{result['num_test']:,} test ratings, {result['device']})"
    )
    print(f"{'metric':<12}{'torchrs_fn':>12}{'TFRS tutorial':>16}")
    print(f"{'test RMSE':<12}{result['rmse']:>12.4f}{TFRS_RMSE:>16.2f}")
    print()
    for i, (secs, loss) in enumerate(zip(result["epoch_seconds"], result["train_loss"]), start=1):
        print(f"epoch {i}: {secs:6.2f} s   train loss (MSE) {loss:.4f}")
    print(f"train step: {result['train_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
