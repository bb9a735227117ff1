"""TFRS's multitask tutorial, in torchrs_fn: one model, a rating task and a retrieval task.

A user embedding and a movie-title embedding (32 each) serve two tasks on MovieLens 100K: rating
prediction (an MLP 256-128-1 over both embeddings, mean squared error) and retrieval (in-batch
softmax, FactorizedTopK over all movies). ``tasks.MultiTask`` sums the losses with weights that
live in the train state (``init_state(hparams=multitask.hparams())``), so the three weightings
of the tutorial, (rating, retrieval) = (1, 0), (0, 1) and (1, 1), train with one step function.
Adagrad 0.1, batch 8192, 3 epochs, seeded 80/20 split.

TFRS's tutorial publishes (top-100 accuracy / RMSE): 0.060 / 1.113 for the rating-specialised
model, 0.233 / 3.688 for the retrieval-specialised one and 0.235 / 1.110 for the joint one.

    python examples/movielens_multitask.py                  # table
    python examples/movielens_multitask.py --json           # one JSON line per weighting
    python examples/movielens_multitask.py --weights 1,0 1,1
    python examples/movielens_multitask.py --checkpoint-dir ckpt      # ckpt/rating1_retrieval0, ...
    python examples/movielens_multitask.py --save-params params.trs   # params.rating1_retrieval0.trs

Each weighting is one run, named ``ratingA_retrievalB`` after its weights (``rating1_retrieval0``,
``rating0.5_retrieval1``, ...). With ``--checkpoint-dir DIR`` each run checkpoints into
``DIR/ratingA_retrievalB`` at the end of every epoch (and every ``--checkpoint-every`` steps);
started again with the same flags, every run resumes from its newest valid checkpoint and a
finished run is not trained again (``train.Checkpointer``). ``--save-params PATH`` writes each
run's trained parameters to ``PATH`` with the run's name before the suffix (``params.trs`` ->
``params.rating1_retrieval0.trs``), with ``torchrs_fn.save_tree``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # the examples' shared --checkpoint-dir / --save-params flags

import torchrs_fn as rs
from torchrs_fn import layers, metrics, optim, train
from torchrs_fn.data import Loader, StringLookup, random_split
from torchrs_fn.data.datasets import movielens
from torchrs_fn.tasks import MultiTask, Ranking, Retrieval

TFRS_PUBLISHED = {
    (1.0, 0.0): (0.060, 1.113),
    (0.0, 1.0): (0.233, 3.688),
    (1.0, 1.0): (0.235, 1.110),
}


class MultitaskModel(rs.Model):
    """Shared user and movie embeddings; a rating head; rating + retrieval tasks."""

    def __init__(self, num_users: int, num_titles: int, dim: int = 32) -> None:
        super().__init__()
        self.user_model = layers.Embedding(num_users, dim)
        self.movie_model = layers.Embedding(num_titles, dim)
        self.rating_model = layers.MLP(2 * dim, [256, 128, 1])
        self.tasks = MultiTask(
            {
                "rating": Ranking(loss="mean_squared_error", metrics=("rmse",)),
                "retrieval": Retrieval(),
            }
        )

    def rating(self, users: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
        return self.rating_model(torch.cat([users, movies], dim=-1)).squeeze(-1)

    def compute_loss(
        self, batch: dict[str, torch.Tensor], training: bool = False, hparams: dict | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        users = self.user_model(batch["user_id"])
        movies = self.movie_model(batch["movie_title"])
        return self.tasks.loss(
            {
                "rating": (batch["user_rating"], self.rating(users, movies)),
                "retrieval": (users, movies),
            },
            hparams,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder (or zip) with the GroupLens files")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the shuffle and the init")
    p.add_argument(
        "--weights",
        nargs="+",
        default=["1,0", "0,1", "1,1"],
        help="rating,retrieval weight pairs (default: the tutorial's three)",
    )
    _cli.add_device_and_compile_flags(p, no_compile=False)
    p.add_argument("--json", action="store_true", help="one JSON line per weighting")
    _cli.add_checkpoint_flags(p, runs="ratingA_retrievalB, e.g. rating1_retrieval0")
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    try:
        args.weights = [tuple(float(x) for x in w.split(",")) for w in args.weights]
    except ValueError:
        p.error(f"--weights takes pairs like 1,0; got {args.weights}")
    if any(len(w) != 2 for w in args.weights):
        p.error(f"--weights takes pairs like 1,0; got {args.weights}")
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ratings, movies = movielens.load("100k", data_dir=args.data_dir)
    user_lookup = StringLookup(vocabulary=pc.unique(ratings["user_id"]).sort().to_pylist())
    title_lookup = StringLookup(vocabulary=pc.unique(movies["movie_title"]).sort().to_pylist())
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

    train_data, test_data = featurize(train_table), featurize(test_table)
    # FactorizedTopK candidates: every row of the movies table, as in the tutorial.
    candidate_ids = torch.from_numpy(title_lookup(movies["movie_title"].to_numpy())).to(device)
    row_of_title = metrics.candidate_rows(candidate_ids, title_lookup.vocabulary_size())

    model = MultitaskModel(user_lookup.vocabulary_size(), title_lookup.vocabulary_size())
    optimizer = optim.adagrad(args.learning_rate)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    # One step for every weighting: the weights are state hyperparameters, not constants.
    step = train.make_train_step(model, optimizer, compile=compile_)

    def eval_fn(params: rs.Params, batch: dict, candidates: torch.Tensor) -> dict:
        users = rs.apply(model.user_model, params["user_model"], batch["user_id"])
        movies_ = rs.apply(model.movie_model, params["movie_model"], batch["movie_title"])
        ratings_ = rs.apply(model, params, users, movies_, method="rating")
        return {
            **metrics.factorized_top_k(users, candidates, row_of_title[batch["movie_title"]]),
            **model.tasks.tasks["rating"].metrics(batch["user_rating"], ratings_),
        }

    eval_step = train.make_eval_step(eval_fn, compile=False)
    results = []
    for rating_weight, retrieval_weight in args.weights:
        params = rs.init(model, seed=args.seed, device=device)
        hparams = {"task_weight/rating": rating_weight, "task_weight/retrieval": retrieval_weight}
        state = train.init_state(params, optimizer, hparams=hparams)
        loader = Loader(train_data, args.batch_size, shuffle=True, seed=args.seed, device=device)
        run_name = f"rating{rating_weight:g}_retrieval{retrieval_weight:g}"
        state, history = train.fit(
            step,
            state,
            loader,
            epochs=args.epochs,
            verbose=False,
            checkpoint=_cli.checkpointer(args, run_name),
        )
        _cli.save_params(args, state.params, run_name)
        candidates = rs.apply(model.movie_model, state.params["movie_model"], candidate_ids)
        test = train.evaluate(
            eval_step,
            state.params,
            Loader(test_data, args.eval_batch_size, device=device),
            candidates,
        )
        published = TFRS_PUBLISHED.get((rating_weight, retrieval_weight))
        results.append(
            {
                "rating_weight": rating_weight,
                "retrieval_weight": retrieval_weight,
                "top_100": test["top_100"],
                "rmse": test["rmse"],
                "epoch_seconds": [h["epoch_seconds"] for h in history],
                "train_rating_loss": [h["rating_loss"] for h in history],
                "train_retrieval_loss": [h["retrieval_loss"] for h in history],
                "tfrs_published": published,
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
    print(f"\nMovieLens 100K multitask: rating + retrieval, {args.epochs} epochs")
    print(
        f"{'weights (rating, retrieval)':<30}{'top-100':>9}{'RMSE':>8}{'TFRS top-100 / RMSE':>22}"
    )
    for r in results:
        ref = r["tfrs_published"]
        ref_text = f"{ref[0]:.3f} / {ref[1]:.3f}" if ref else "—"
        weights = f"({r['rating_weight']:g}, {r['retrieval_weight']:g})"
        print(f"{weights:<30}{r['top_100']:>9.4f}{r['rmse']:>8.3f}{ref_text:>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
