"""TFRS's deep_recommenders tutorial ("Building deep retrieval models"), in torchrs_fn.

The features of the context-features tutorial: the query tower embeds the user id (32) and the
rating's timestamp, bucketised (1,000 evenly spaced boundaries, embedding 32) and normalised (one
number); the candidate tower embeds the movie title (32) and the title's words (a bag-of-words
average, 32). Both towers then run the same stack of Dense layers, ReLU on all but the last: one
layer ``[32]``, two ``[64, 32]`` or three ``[128, 64, 32]``. In-batch softmax retrieval loss
(summed over the batch), Adagrad 0.1, batch 2048 reshuffled every epoch, seeded 80/20 split of
MovieLens 100K; FactorizedTopK over all 1,682 movies on the test set after the last epoch.

TFRS trains each model for 300 epochs and publishes test top-100 of about 0.27 (one layer) and
0.29 (two layers); three layers "don't improve over the shallow model" (no figure). The default
here is 30 epochs, which a 2-core CPU trains in minutes: the accuracies are then lower than the
published ones (``--epochs 300`` runs the tutorial's recipe). ``benchmarks/tfrs_deep_recommenders.py
--compare`` trains TFRS on the same rows for the same number of epochs.

    python examples/movielens_deep.py --data-dir ../shared/data/ml-100k
    python examples/movielens_deep.py --layers 1,2 --epochs 300 --json
    python examples/movielens_deep.py --checkpoint-dir ckpt       # ckpt/layers1, ...: resumable
    python examples/movielens_deep.py --save-params params.trs    # params.layers1.trs, ...

Each depth is one run, named ``layersN`` (``layers1``, ``layers2``, ``layers3``). With
``--checkpoint-dir DIR`` each run checkpoints into ``DIR/layersN`` at the end of every epoch (and
every ``--checkpoint-every`` steps); started again with the same flags, every run resumes from
its newest valid checkpoint and a finished run is not trained again (``train.Checkpointer``).
``--save-params PATH`` writes each run's trained parameters to ``PATH`` with the run's name
before the suffix (``params.trs`` -> ``params.layers1.trs``), with ``torchrs_fn.save_tree``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # the examples' shared --checkpoint-dir / --save-params flags

import torchrs_fn as rs
from torchrs_fn import layers, metrics, optim, train
from torchrs_fn.data import Loader, StringLookup, TextVectorization, TimestampFeatures, random_split
from torchrs_fn.data.datasets import movielens
from torchrs_fn.models import FeatureTower, TwoTowerModel, candidate_embeddings_for_table

# Depth -> the tutorial's layer sizes (the same for both towers).
LAYER_SIZES = {1: (32,), 2: (64, 32), 3: (128, 64, 32)}
# TFRS's published test top-100 after 300 epochs; for three layers the tutorial gives no number,
# only that it does not beat one layer.
TFRS_PUBLISHED_TOP_100: dict[int, float | None] = {1: 0.27, 2: 0.29, 3: None}
TFRS_EPOCHS = 300
DEFAULT_EPOCHS = 30
EMBEDDING_DIM = 32
MAX_TOKENS = 10_000  # the tutorial's TextVectorization(max_tokens=10_000) and its embedding rows
COLUMNS = ["user_id", "movie_title", "timestamp"]  # what the tutorial keeps of each rating


def load_split(data_dir: str | None, seed: int) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """``(ratings, movies, train, test)``: MovieLens 100K and the seeded 80/20 split of the ratings'
    ``COLUMNS`` (``benchmarks/tfrs_deep_recommenders.py`` writes these rows for TFRS)."""
    ratings, movies = movielens.load("100k", data_dir=data_dir)
    train_table, test_table = random_split(ratings.select(COLUMNS), (0.8, 0.2), seed=seed)
    return ratings, movies, train_table, test_table


@dataclass(frozen=True)
class Featurizer:
    """The tutorial's preprocessing, fitted once on the whole data set as the tutorial does.

    ``user_lookup`` (sorted unique user ids), ``title_lookup`` (sorted unique titles of the
    movies table), ``timestamps`` (mean/variance and ``linspace(min, max, 1000)`` boundaries of
    every rating's timestamp) and ``vectorizer`` (title words of the movies table, at most
    ``MAX_TOKENS`` ids). Calling it on a table of ``COLUMNS`` gives the model's id columns.
    """

    user_lookup: StringLookup
    title_lookup: StringLookup
    timestamps: TimestampFeatures
    vectorizer: TextVectorization

    @classmethod
    def fit(cls, ratings: pa.Table, movies: pa.Table) -> Featurizer:
        return cls(
            user_lookup=StringLookup(vocabulary=pc.unique(ratings["user_id"]).sort().to_pylist()),
            title_lookup=StringLookup(
                vocabulary=pc.unique(movies["movie_title"]).sort().to_pylist()
            ),
            timestamps=TimestampFeatures.fit(ratings["timestamp"], num_boundaries=1000),
            # Each call pads to its longest title (the tutorial pads per batch; the mean is the same).
            vectorizer=TextVectorization.fit(movies["movie_title"], max_tokens=MAX_TOKENS),
        )

    def movies(self, table: pa.Table) -> pa.Table:
        """The candidate tower's columns: ``movie_title`` ids and ``title_tokens`` ``[N, L]``."""
        return pa.table(
            {
                "movie_title": self.title_lookup(table["movie_title"]),
                "title_tokens": self.vectorizer(table["movie_title"]),
            }
        )

    def __call__(self, table: pa.Table) -> pa.Table:
        """Both towers' columns for a table of ratings."""
        stamps = self.timestamps(table["timestamp"])
        movie_columns = self.movies(table)
        return pa.table(
            {
                "user_id": self.user_lookup(table["user_id"]),
                "timestamp_bucket": stamps.bucket,
                "timestamp_normalized": stamps.normalized,
                **{name: movie_columns[name] for name in movie_columns.column_names},
            }
        )


def build_model(features: Featurizer, layer_sizes: tuple[int, ...]) -> TwoTowerModel:
    """The tutorial's ``MovielensModel(layer_sizes)``: ``QueryModel`` and ``CandidateModel`` as
    ``FeatureTower``s (features concatenated in the tutorial's order, then the Dense stack)."""
    query = FeatureTower(
        {
            "user_id": layers.Embedding(features.user_lookup.vocabulary_size(), EMBEDDING_DIM),
            "timestamp_bucket": layers.Embedding(features.timestamps.num_buckets, EMBEDDING_DIM),
            "timestamp_normalized": "numeric",
        },
        mlp=layer_sizes,
    )
    candidate = FeatureTower(
        {
            "movie_title": layers.Embedding(features.title_lookup.vocabulary_size(), EMBEDDING_DIM),
            "title_tokens": layers.BagEmbedding(MAX_TOKENS, EMBEDDING_DIM, combiner="mean"),
        },
        mlp=layer_sizes,
    )
    return TwoTowerModel(query, candidate)


def parse_layers(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        depths = ()
    if not depths or any(d not in LAYER_SIZES for d in depths):
        raise argparse.ArgumentTypeError(
            f"--layers takes a comma-separated subset of {sorted(LAYER_SIZES)}, got {text!r}"
        )
    return depths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", default=None, help="folder (or ml-100k.zip) with the GroupLens files"
    )
    p.add_argument(
        "--layers",
        type=parse_layers,
        default=(1, 2, 3),
        help="depths to train, e.g. 1,2 (1: [32], 2: [64, 32], 3: [128, 64, 32]; default 1,2,3)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"epochs per model (default {DEFAULT_EPOCHS}; TFRS's published figures are at "
        f"{TFRS_EPOCHS})",
    )
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the shuffle and the init")
    _cli.add_device_and_compile_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON line per depth")
    _cli.add_checkpoint_flags(p, runs="layersN, e.g. layers1")
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    return args


@dataclass
class Data:
    """What every depth trains and tests on."""

    features: Featurizer
    train: pa.Table
    test: pa.Table
    candidates: pa.Table  # the candidate tower's columns of every row of the movies table
    row_of_title: torch.Tensor  # title id -> its first row among the candidates


def prepare(args: argparse.Namespace, device: torch.device) -> Data:
    ratings, movies, train_table, test_table = load_split(args.data_dir, args.seed)
    features = Featurizer.fit(ratings, movies)
    # FactorizedTopK's candidates, as in the tutorial: every row of the movies table (1,682 rows;
    # 18 titles appear twice). A test pair's positive is its title's first row.
    candidates = features.movies(movies)
    row_of_title = metrics.candidate_rows(
        torch.tensor(candidates["movie_title"].to_numpy(), device=device),
        features.title_lookup.vocabulary_size(),
    )
    return Data(features, features(train_table), features(test_table), candidates, row_of_title)


def run(args: argparse.Namespace, depth: int, data: Data | None = None) -> dict[str, Any]:
    """Trains and evaluates the ``depth``-layer model; returns its JSON record."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = prepare(args, device) if data is None else data
    layer_sizes = LAYER_SIZES[depth]

    train_loader = Loader(data.train, args.batch_size, shuffle=True, seed=args.seed, device=device)
    test_loader = Loader(data.test, args.eval_batch_size, device=device)

    model = build_model(data.features, layer_sizes)
    params = rs.init(model, seed=args.seed, device=device)
    optimizer = optim.adagrad(args.learning_rate)
    state = train.init_state(params, optimizer)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    train_step = train.make_train_step(model, optimizer, compile=compile_)

    def eval_fn(params: rs.Params, batch: dict, candidates: torch.Tensor) -> dict:
        queries = rs.apply(model, params, batch, method="query_embeddings")
        return metrics.factorized_top_k(
            queries, candidates, data.row_of_title[batch["movie_title"]]
        )

    eval_step = train.make_eval_step(eval_fn, compile=compile_)

    run_name = f"layers{depth}"
    state, history = train.fit(
        train_step,
        state,
        train_loader,
        epochs=args.epochs,
        verbose=not args.json,
        checkpoint=_cli.checkpointer(args, run_name),
    )
    _cli.save_params(args, state.params, run_name)

    t0 = time.perf_counter()
    candidates = candidate_embeddings_for_table(model, state.params, data.candidates)
    test_metrics = train.evaluate(eval_step, state.params, test_loader, candidates)
    eval_seconds = time.perf_counter() - t0
    return {
        "layers": depth,
        "layer_sizes": list(layer_sizes),
        "top_100": test_metrics["top_100"],
        "top_50": test_metrics["top_50"],
        "top_10": test_metrics["top_10"],
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "top_1": test_metrics["top_1"],
        "top_5": test_metrics["top_5"],
        "tfrs_published_top_100": TFRS_PUBLISHED_TOP_100[depth],
        "tfrs_published_epochs": TFRS_EPOCHS,
        "epochs": args.epochs,
        "epoch_cpu_seconds": [h["epoch_cpu_seconds"] for h in history],
        "train_loss": [h["loss"] for h in history],
        "eval_seconds": eval_seconds,
        "num_train": data.train.num_rows,
        "num_test": data.test.num_rows,
        "num_candidates": int(candidates.shape[0]),
        "num_params": sum(int(p.numel()) for p in rs.tree.leaves(state.params)),
        "device": str(device),
        "compile": args.compile,
        "train_step": getattr(train_step, "status", "compiled" if compile_ else "eager"),
        "seed": args.seed,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = prepare(args, device)
    results = []
    for depth in args.layers:
        results.append(run(args, depth, data))
        if args.json:
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        return 0
    print(
        f"\nMovieLens 100K deep retrieval, {args.epochs} epochs ({results[0]['num_train']:,} train / "
        f"{results[0]['num_test']:,} test pairs, FactorizedTopK over "
        f"{results[0]['num_candidates']:,} movies, {results[0]['device']})"
    )
    print(
        f"{'layers':<16}{'top-10':>8}{'top-50':>8}{'top-100':>9}"
        f"{'TFRS top-100 (' + str(TFRS_EPOCHS) + ' ep.)':>24}{'epoch s':>9}"
    )
    for r in results:
        published = r["tfrs_published_top_100"]
        shown = f"{published:.2f}" if published is not None else "< 1 layer's"
        print(
            f"{r['layer_sizes']!s:<16}{r['top_10']:>8.4f}{r['top_50']:>8.4f}{r['top_100']:>9.4f}"
            f"{shown:>24}{float(np.median(r['epoch_seconds'])):>9.2f}"
        )
    if args.epochs < TFRS_EPOCHS:
        print(
            f"(TFRS's figures are after {TFRS_EPOCHS} epochs; --epochs {TFRS_EPOCHS} for the same "
            "recipe; epoch s: median wall-clock seconds per epoch)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
