"""TFRS's sequential_retrieval tutorial, in torchrs_fn: a GRU over the last 10 movies as the query.

The tutorial's recipe (its notebook and the TF Lite ``example_generation_movielens.py`` script it
runs with ``--min_rating=2 --min_timeline_length=3 --max_context_length=10
--train_data_fraction=0.9``):

* ratings of 2 stars or more, each user's ratings sorted by time (ties in file order);
* ``data.sequence_examples``: every position t >= 1 of a timeline of at least 3 ratings gives one
  example, ``context`` = the up to 10 movies before it (oldest first, right-padded with id 0),
  ``target`` = the movie at t;
* the examples shuffled and split 90% train / 10% test (``--split random``, seeded; the script
  uses Python's unseeded ``random.shuffle``). This split is not temporal: a test example's
  target may precede the user's training examples, whose contexts can then contain it.
  ``--split last`` holds out each user's last example instead (leave-one-out by time: no future
  leaks into training; 1 test example per user, so a smaller, harder test set);
* movie ids through a lookup over the movies table (ids 1..N, 0 the OOV id that also pads);
* query tower ``layers.GRUEncoder``: movie embedding 32, GRU 32 (Keras GRU cell); candidate
  tower: movie embedding 32 (a separate table, as in the tutorial); ``tasks.Retrieval`` (in-batch
  softmax summed over the batch); Adagrad 0.1; train batch 12,800, test batch 2,560; 3 epochs;
* FactorizedTopK over every movie of the movies table (1M: 3,883; 100K: 1,682).

One deliberate difference: the tutorial's ``Embedding`` has no ``mask_zero``, so its GRU also
steps through the padding (the OOV embedding) after the real movies. Here the padding is masked
(Keras ``mask_zero=True`` semantics: the state after the last real movie), via the
``context_length`` column; ``--no-mask`` runs the tutorial's unmasked GRU instead.

Also reported: the same top-k with each test user's training targets excluded from the ranking
(``metrics.factorized_top_k(..., exclude=)`` from ``data.UserPositives``), ``top_k_excluding_seen``:
users rarely rate a movie twice (never in MovieLens), so ranking seen movies wastes slots.

Data: MovieLens 1M when its files are present (``--dataset auto``, the default: looked for in
``--data-dir``, the folder beside it, and the data cache; nothing is downloaded for the check),
otherwise MovieLens 100K (downloaded into the cache if absent, as the other examples do); the
output says which. ``--dataset 1m`` insists on 1M (downloading it into the cache if needed).

    python examples/movielens_sequential.py                       # readable table
    python examples/movielens_sequential.py --json                # one JSON line
    python examples/movielens_sequential.py --data-dir ../shared/data/ml-100k --epochs 10
    python examples/movielens_sequential.py --checkpoint-dir ckpt     # resumes if stopped
    python examples/movielens_sequential.py --save-params params.trs

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
from torchrs_fn import layers, metrics, models, optim, train
from torchrs_fn.data import (
    Loader,
    StringLookup,
    UserPositives,
    leave_last_n_out,
    random_split,
    sequence_examples,
)
from torchrs_fn.data.datasets import DatasetNotFoundError, cache_dir, movielens
from torchrs_fn.tasks import Retrieval

NAMES = {"100k": "MovieLens 100K", "1m": "MovieLens 1M"}
CONTEXT_LENGTH = 10
MIN_TIMELINE_LENGTH = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        choices=("auto", "100k", "1m"),
        default="auto",
        help="auto: MovieLens 1M when its files are present, else 100K",
    )
    p.add_argument(
        "--data-dir", default=None, help="folder (or zip) with the GroupLens files (either size)"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=12_800)
    p.add_argument("--eval-batch-size", type=int, default=2_560)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--min-rating", type=float, default=2.0, help="keep ratings >= this")
    p.add_argument(
        "--split",
        choices=("random", "last"),
        default="random",
        help="random: the tutorial's 90/10 shuffle of examples; last: each user's last example",
    )
    p.add_argument(
        "--no-mask",
        dest="mask",
        action="store_false",
        help="let the GRU step through the padding, as the tutorial does",
    )
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the shuffle and the init")
    _cli.add_device_and_compile_flags(p, steps="the train step")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    _cli.add_checkpoint_flags(p)
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    for name in ("epochs", "batch_size", "eval_batch_size", "embedding_dim"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def _places_for_1m(data_dir: str | None) -> list[Path]:
    """Where ``--dataset auto`` looks for the 1M files: ``--data-dir`` (a folder), the folder
    beside it (``--data-dir .../ml-100k`` finds ``.../ml-1m``), then the data cache."""
    places = []
    if data_dir is not None:
        where = Path(data_dir).expanduser()
        if where.is_dir():
            places.append(where)
        places.append(where.parent)
    places.append(cache_dir())
    return [p for p in dict.fromkeys(places) if p.is_dir()]


def load_ratings(dataset: str, data_dir: str | None) -> tuple[str, movielens.MovieLens, str]:
    """``(variant, (ratings, movies), why)``: 1M from the first place holding its files, else 100K."""
    if dataset in ("auto", "1m"):
        for place in _places_for_1m(data_dir):
            try:
                return "1m", movielens.load("1m", data_dir=place), f"files found in {place}"
            except DatasetNotFoundError:  # not there: a corrupt file there still raises
                continue
        if dataset == "1m":
            return "1m", movielens.load("1m"), "from the data cache"
        looked = [str(p) for p in _places_for_1m(data_dir) if p != cache_dir()]
        looked.append(f"the data cache {cache_dir()}")
        why = f"MovieLens 1M files not found (looked in {', '.join(looked)})"
        return "100k", movielens.load("100k", data_dir=data_dir), why
    return "100k", movielens.load("100k", data_dir=data_dir), "as asked"


def make_model(num_movies: int, dim: int, mask: bool) -> models.TwoTowerModel:
    """Query: GRU over the context; candidate: a movie embedding; the Retrieval task."""
    # Masked: the context_length column says which positions are real (so the pad id may equal
    # the OOV id 0). Unmasked (the tutorial): no id is padding, every position is stepped.
    gru = layers.GRUEncoder(num_movies, dim, dim, padding_id=0 if mask else None)
    query = models.FeatureTower(
        {"context": gru}, lengths={"context": "context_length"} if mask else None
    )
    candidate = models.FeatureTower({"target": layers.Embedding(num_movies, dim)})
    return models.TwoTowerModel(query, candidate, Retrieval())


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    variant, (ratings, movies), why = load_ratings(args.dataset, args.data_dir)
    if not args.json:
        print(f"dataset: {NAMES[variant]} ({why})", file=sys.stderr)

    ratings = ratings.filter(pc.greater_equal(ratings["user_rating"], args.min_rating))
    # The tutorial's vocabulary: the sorted unique movie ids of the movies table; OOV id 0.
    movie_lookup = StringLookup(vocabulary=pc.unique(movies["movie_id"]).sort().to_pylist())
    user_lookup = StringLookup(vocabulary=pc.unique(ratings["user_id"]).to_pylist())
    interactions = pa.table(
        {
            "user": user_lookup(ratings["user_id"]),
            "movie": movie_lookup(ratings["movie_id"]),
            "timestamp": ratings["timestamp"],
        }
    )
    examples = sequence_examples(
        interactions,
        user="user",
        item="movie",
        max_context_length=CONTEXT_LENGTH,
        min_timeline_length=MIN_TIMELINE_LENGTH,
        pad_id=0,
    )
    if args.split == "random":
        train_table, test_table = random_split(examples, (0.9, 0.1), seed=args.seed)
    else:
        train_table, test_table = leave_last_n_out(examples, 1, user="user")
    columns = ["user", "context", "context_length", "target"]
    train_table, test_table = train_table.select(columns), test_table.select(columns)

    num_movies = movie_lookup.vocabulary_size()
    # FactorizedTopK candidates, as in the tutorial: every row of the movies table.
    candidate_ids = torch.from_numpy(movie_lookup(movies["movie_id"].to_numpy())).to(device)
    row_of_movie = metrics.candidate_rows(candidate_ids, num_movies)
    # "Seen": each user's training targets, as candidate rows (-1 pads).
    seen = UserPositives(
        train_table["user"],
        train_table["target"],
        num_users=user_lookup.vocabulary_size(),
        num_items=num_movies,
    )

    def with_seen(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = seen.padded(batch["user"].cpu()).to(device)
        batch["seen"] = torch.where(ids >= 0, row_of_movie[ids.clamp(min=0)], -1)
        return batch

    train_loader = Loader(train_table, args.batch_size, shuffle=True, seed=args.seed, device=device)
    test_loader = Loader(test_table, args.eval_batch_size, device=device, transform=with_seen)

    model = make_model(num_movies, args.embedding_dim, args.mask)
    params = rs.init(model, seed=args.seed, device=device)
    optimizer = optim.adagrad(args.learning_rate)
    state = train.init_state(params, optimizer)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    train_step = train.make_train_step(model, optimizer, compile=compile_)

    def eval_fn(params: rs.Params, batch: dict, candidates: torch.Tensor) -> dict:
        queries = rs.apply(model, params, batch, method="query_embeddings")
        positives = row_of_movie[batch["target"]]
        out = metrics.factorized_top_k(queries, candidates, positives)
        unseen = metrics.factorized_top_k(queries, candidates, positives, exclude=batch["seen"])
        return {**out, **{f"{k}_excluding_seen": v for k, v in unseen.items()}}

    # Eager: the width of "seen" changes from batch to batch, and one pass over the test set
    # costs less than a compile.
    eval_step = train.make_eval_step(eval_fn, compile=False)

    state, history = train.fit(
        train_step,
        state,
        train_loader,
        epochs=args.epochs,
        verbose=not args.json,
        checkpoint=_cli.checkpointer(args),
    )
    _cli.save_params(args, state.params)
    t0 = time.perf_counter()
    candidates = models.candidate_embeddings_for_table(
        model, state.params, {"target": candidate_ids}
    )
    test_metrics = train.evaluate(eval_step, state.params, test_loader, candidates)
    eval_seconds = time.perf_counter() - t0
    names = metrics.top_k_metric_names()
    return {
        "dataset": variant,
        **{k: test_metrics[k] for k in names},
        **{f"{k}_excluding_seen": test_metrics[f"{k}_excluding_seen"] for k in names},
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "train_loss": [h["loss"] for h in history],
        "eval_seconds": eval_seconds,
        "num_train": train_table.num_rows,
        "num_test": test_table.num_rows,
        "num_candidates": int(candidate_ids.numel()),
        "split": args.split,
        "mask": args.mask,
        "device": str(device),
        "compile": args.compile,
        "train_step": getattr(train_step, "status", "compiled" if compile_ else "eager"),
        "seed": args.seed,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"\n{NAMES[result['dataset']]} sequential retrieval ({result['num_train']:,} train / "
        f"{result['num_test']:,} test examples, {args.split} split, "
        f"{result['num_candidates']:,} candidate movies, {result['device']})"
    )
    print(f"{'metric':<28}{'test':>10}{'excluding seen':>16}")
    for k in metrics.top_k_metric_names():
        label = f"factorized top-{k[4:]} accuracy"
        print(f"{label:<28}{result[k]:>10.4f}{result[k + '_excluding_seen']:>16.4f}")
    print()
    for i, (secs, loss) in enumerate(zip(result["epoch_seconds"], result["train_loss"]), start=1):
        print(f"epoch {i}: {secs:6.2f} s   train loss {loss:,.1f}")
    print(f"evaluation: {result['eval_seconds']:.3f} s   train step: {result['train_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
