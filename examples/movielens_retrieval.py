"""TFRS's basic_retrieval tutorial, in torchrs_fn.

A two-tower retrieval model on MovieLens 100K: a user-id embedding and a movie-title embedding of
dimension 32, trained with the in-batch softmax retrieval loss (summed over the batch), Adagrad 0.1,
batch 8192, 3 epochs, on a seeded 80/20 random split; evaluated with FactorizedTopK (top-k
accuracy of the test pair's movie among the titles of all 1,682 movies). TFRS reports test top-100 of about 0.23.

    python examples/movielens_retrieval.py                # readable table
    python examples/movielens_retrieval.py --json         # one JSON line
    python examples/movielens_retrieval.py --data-dir ../shared/data/ml-100k
    python examples/movielens_retrieval.py --checkpoint-dir ckpt --checkpoint-every 5
    python examples/movielens_retrieval.py --save-params params.trs

Data parallel on several processes (gloo on CPU, NCCL on GPU), results printed once by rank 0:

    torchrun --standalone --nproc_per_node 2 examples/movielens_retrieval.py

Each rank trains on its share of every batch (``--batch-size`` rows per rank, so the global batch
is ``nproc * batch-size``) and the ranks' gradients are averaged (``train.distributed``).

With ``--checkpoint-dir`` the run saves a checkpoint at the end of every epoch (and every
``--checkpoint-every`` steps) and, started again with the same flags, resumes from the newest
valid one (``train.Checkpointer``); a run that already finished resumes straight to evaluation.
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
from torchrs_fn import layers, metrics, optim, train
from torchrs_fn.data import Loader, StringLookup, random_split
from torchrs_fn.data.datasets import movielens
from torchrs_fn.tasks import Retrieval
from torchrs_fn.train import distributed


class MovieLensModel(rs.Model):
    """User tower and movie tower, each a single embedding table, with TFRS's Retrieval task."""

    def __init__(
        self,
        num_users: int,
        num_titles: int,
        embedding_dim: int = 32,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.user_model = layers.Embedding(num_users, embedding_dim)
        self.movie_model = layers.Embedding(num_titles, embedding_dim)
        self.task = Retrieval(temperature=temperature)

    def compute_loss(self, batch: dict[str, torch.Tensor], training: bool = False) -> torch.Tensor:
        user_embeddings = self.user_model(batch["user_id"])  # [B, 32]
        movie_embeddings = self.movie_model(batch["movie_title"])  # [B, 32]
        return self.task(user_embeddings, movie_embeddings)


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
    p.add_argument(
        "--temperature", type=float, default=None, help="softmax temperature (default: none)"
    )
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the shuffle and the init")
    _cli.add_device_and_compile_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    _cli.add_checkpoint_flags(p)
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    return args


def run(args: argparse.Namespace, keep: dict | None = None) -> dict:
    """Train and evaluate; ``keep``, when given, receives the trained ``model``, ``params``, the
    candidates' ``candidate_ids`` and every ``user_ids`` (for ``serving.py``)."""
    # Under torchrun: join the process group (NCCL for GPUs, gloo for CPU tensors); alone: nothing.
    on_gpu = torch.device(args.device).type == "cuda" if args.device else torch.cuda.is_available()
    distributed.init_from_env("nccl" if on_gpu else "gloo")
    device = torch.device(args.device or (f"cuda:{distributed.local_rank()}" if on_gpu else "cpu"))
    ratings, movies = movielens.load("100k", data_dir=args.data_dir)

    # As in the tutorial: vocabularies are the sorted unique user ids and movie titles.
    user_lookup = StringLookup(vocabulary=pc.unique(ratings["user_id"]).sort().to_pylist())
    title_lookup = StringLookup(vocabulary=pc.unique(movies["movie_title"]).sort().to_pylist())

    train_table, test_table = random_split(
        ratings.select(["user_id", "movie_title"]), (0.8, 0.2), seed=args.seed
    )

    def featurize(table: pa.Table) -> pa.Table:
        return pa.table(
            {
                "user_id": user_lookup(table["user_id"]),
                "movie_title": title_lookup(table["movie_title"]),
            }
        )

    train_loader = Loader(
        featurize(train_table), args.batch_size, shuffle=True, seed=args.seed, device=device
    )
    test_loader = Loader(featurize(test_table), args.eval_batch_size, device=device)

    model = MovieLensModel(
        user_lookup.vocabulary_size(),
        title_lookup.vocabulary_size(),
        args.embedding_dim,
        args.temperature,
    )
    params = rs.init(model, seed=args.seed, device=device)
    optimizer = optim.adagrad(args.learning_rate)
    state = train.init_state(params, optimizer)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    train_step = train.make_train_step(model, optimizer, compile=compile_)

    # FactorizedTopK candidates, as in the tutorial: the title of every row of the movies table
    # (1,682 rows; 18 titles appear twice). A test pair's positive is its title's first row.
    candidate_ids = torch.from_numpy(title_lookup(movies["movie_title"].to_numpy())).to(device)
    row_of_title = metrics.candidate_rows(candidate_ids, title_lookup.vocabulary_size())

    def eval_fn(params: rs.Params, batch: dict, candidates: torch.Tensor) -> dict:
        queries = rs.apply(model.user_model, params["user_model"], batch["user_id"])
        return metrics.factorized_top_k(queries, candidates, row_of_title[batch["movie_title"]])

    eval_step = train.make_eval_step(eval_fn, compile=compile_)

    # Every rank resumes from the same checkpoint; only rank 0 writes.
    checkpoint = _cli.checkpointer(args, cls=distributed.MainRankCheckpointer)
    state, history = train.fit(
        train_step,
        state,
        train_loader,
        epochs=args.epochs,
        verbose=not args.json and distributed.is_main(),
        checkpoint=checkpoint,
    )
    if distributed.is_main():
        _cli.save_params(args, state.params)

    def evaluate_once() -> tuple[dict, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        candidates = rs.apply(model.movie_model, state.params["movie_model"], candidate_ids)
        result = train.evaluate(eval_step, state.params, test_loader, candidates)
        return result, time.perf_counter() - t0, time.process_time() - c0

    if keep is not None:
        keep.update(
            model=model,
            params=state.params,
            candidate_ids=candidate_ids,
            user_ids=torch.arange(user_lookup.vocabulary_size(), device=device),
        )
    _, eval_seconds_first, _ = evaluate_once()  # includes any compile of the eval step
    test_metrics, eval_seconds, eval_cpu_seconds = evaluate_once()
    return {
        **{k: test_metrics[k] for k in metrics.top_k_metric_names()},
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "epoch_cpu_seconds": [h["epoch_cpu_seconds"] for h in history],
        "train_loss": [h["loss"] for h in history],
        "eval_seconds": eval_seconds,
        "eval_seconds_first": eval_seconds_first,
        "eval_cpu_seconds": eval_cpu_seconds,
        "num_train": train_table.num_rows,
        "num_test": test_table.num_rows,
        "num_candidates": int(candidate_ids.numel()),
        "device": str(device),
        "compile": args.compile,
        "train_step": getattr(train_step, "status", "compiled" if compile_ is True else "eager"),
        "seed": args.seed,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    main_rank = distributed.is_main()
    distributed.shutdown()
    if not main_rank:
        return 0  # rank 0 prints the results (every rank computed the same)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"\nMovieLens 100K basic retrieval ({result['num_train']:,} train / {result['num_test']:,} test "
        f"pairs, {result['num_candidates']:,} candidate titles, {result['device']})"
    )
    print(f"{'metric':<28}{'test':>10}")
    for k in metrics.top_k_metric_names():
        print(f"{'factorized top-' + k[4:] + ' accuracy':<28}{result[k]:>10.4f}")
    print()
    for i, (secs, loss) in enumerate(zip(result["epoch_seconds"], result["train_loss"]), start=1):
        print(f"epoch {i}: {secs:6.2f} s   train loss {loss:,.1f}")
    print(
        f"evaluation: {result['eval_seconds']:.3f} s (first pass {result['eval_seconds_first']:.2f} s)"
    )
    print(f"train step: {result['train_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
