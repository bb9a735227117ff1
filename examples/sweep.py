"""A hyperparameter sweep of TFRS's basic retrieval model: learning rate × softmax temperature.

The model, data and split are those of ``examples/movielens_retrieval.py`` (MovieLens 100K,
32-dimensional user-id and movie-title embeddings, the in-batch softmax retrieval loss summed over
the batch, Adagrad, batch 8192, 3 epochs, a seeded 80/20 split). Here the 16 configurations of a
4 × 4 grid of learning rates and temperatures are trained **at once**: ``train.sweep`` stacks their
train states along a leading axis and runs one compiled ``torch.vmap`` of the train step over every
shared batch. After each epoch every configuration is evaluated with FactorizedTopK over all 1,682
movies, and the best one is chosen by ``--metric`` (default ``top_100``).

Each configuration's result equals a separate run of ``examples/movielens_retrieval.py`` with the
same learning rate (and temperature): same initial parameters, same batches. The temperature
reaches the loss as a tensor: the model's ``compute_loss`` takes ``hparams`` and passes
``hparams["temperature"]`` to the ``Retrieval`` task (TFRS's default is no temperature, i.e. 1.0).

    python examples/sweep.py                                  # 4 × 4 grid, readable table
    python examples/sweep.py --json                           # one JSON line per configuration
    python examples/sweep.py --plot sweep.png                 # also a heat map (needs matplotlib:
                                                              #   pip install -e '.[plots]')
    python examples/sweep.py --learning-rates 0.1,0.5 --temperatures 0.1,1 --epochs 1
    python examples/sweep.py --memory-budget 64M              # train the grid in chunks
    python examples/sweep.py --save-params params.trs         # params.lr0.1_t0.5.trs, ...

``--memory-budget`` bounds the memory of the stacked train states (bytes, or with a K/M/G suffix):
the configurations are then trained in chunks, one after the other, by the same compiled step.

``--save-params PATH`` writes every configuration's trained parameters with
``torchrs_fn.save_tree``, one file per configuration, named ``lrA_tB`` after its learning rate
and temperature and inserted before the suffix (``params.trs`` -> ``params.lr0.1_t0.5.trs``).
Unlike the other examples this one takes no ``--checkpoint-dir``: ``train.sweep`` runs its own
vmapped loop, not ``train.fit``, and does not checkpoint.

Not yet here: the issue also asks for a learning rate × L2 sweep of TFRS's basic *ranking* model;
it will join this example once the ranking model exists in torchrs_fn.
"""

from __future__ import annotations

import argparse
import json
import math
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

DEFAULT_LEARNING_RATES = "0.05,0.1,0.2,0.5"
DEFAULT_TEMPERATURES = "0.05,0.1,0.5,1.0"


class SweepRetrievalModel(rs.Model):
    """The basic retrieval model whose loss reads its temperature from the train state."""

    def __init__(self, num_users: int, num_titles: int, embedding_dim: int = 32) -> None:
        super().__init__()
        self.user_model = layers.Embedding(num_users, embedding_dim)
        self.movie_model = layers.Embedding(num_titles, embedding_dim)
        self.task = Retrieval()

    def compute_loss(
        self,
        batch: dict[str, torch.Tensor],
        training: bool = False,
        hparams: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        user_embeddings = self.user_model(batch["user_id"])  # [B, 32]
        movie_embeddings = self.movie_model(batch["movie_title"])  # [B, 32]
        temperature = None if hparams is None else hparams.get("temperature")
        return self.task(user_embeddings, movie_embeddings, temperature=temperature)


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers: {e}") from e
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"values must be positive and finite, got {values}")
    return values


def _bytes(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    t = text.strip().upper().removesuffix("B")
    scale = units.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in units else t) * scale
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected bytes such as 500000000, 512M or 2G: {e}"
        ) from e
    if value <= 0:
        raise argparse.ArgumentTypeError("the memory budget must be positive")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", default=None, help="folder (or ml-100k.zip) with the GroupLens files"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument(
        "--learning-rates",
        type=_floats,
        default=_floats(DEFAULT_LEARNING_RATES),
        help=f"comma-separated Adagrad learning rates (default {DEFAULT_LEARNING_RATES})",
    )
    p.add_argument(
        "--temperatures",
        type=_floats,
        default=_floats(DEFAULT_TEMPERATURES),
        help=f"comma-separated softmax temperatures (default {DEFAULT_TEMPERATURES}; "
        "1.0 is TFRS's default)",
    )
    p.add_argument(
        "--metric",
        default="top_100",
        help="selects the best configuration: a FactorizedTopK metric (top_1 ... top_100, "
        "higher is better) or loss (lower is better)",
    )
    p.add_argument(
        "--memory-budget",
        type=_bytes,
        default=None,
        help="bytes for the stacked train states (suffix K/M/G allowed); default: all at once",
    )
    p.add_argument("--seed", type=int, default=42, help="seeds the split, the shuffle and the init")
    _cli.add_device_and_compile_flags(p)
    p.add_argument("--json", action="store_true", help="one JSON line per configuration")
    p.add_argument("--plot", default=None, metavar="PATH", help="write a PNG heat map here")
    _cli.add_checkpoint_flags(p, runs="lrA_tB, e.g. lr0.1_t0.5", checkpoint=False)
    args = p.parse_args(argv)
    allowed = [*metrics.top_k_metric_names(), "loss"]
    if args.metric not in allowed:
        p.error(f"--metric must be one of {allowed}, got {args.metric!r}")
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def run(args: argparse.Namespace) -> tuple[train.SweepResult, dict]:
    """Load the data, run the sweep; returns the ``SweepResult`` and facts about the run."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ratings, movies = movielens.load("100k", data_dir=args.data_dir)

    # As in examples/movielens_retrieval.py (and the tutorial): sorted unique ids and titles.
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

    model = SweepRetrievalModel(
        user_lookup.vocabulary_size(), title_lookup.vocabulary_size(), args.embedding_dim
    )
    compile_ = _cli.COMPILE_CHOICES[args.compile]

    # FactorizedTopK over the title of every row of the movies table (1,682 rows).
    candidate_ids = torch.from_numpy(title_lookup(movies["movie_title"].to_numpy())).to(device)
    row_of_title = metrics.candidate_rows(candidate_ids, title_lookup.vocabulary_size())

    def eval_fn(params: rs.Params, batch: dict, candidates: torch.Tensor) -> dict:
        queries = rs.apply(model.user_model, params["user_model"], batch["user_id"])
        return metrics.factorized_top_k(queries, candidates, row_of_title[batch["movie_title"]])

    eval_step = train.make_eval_step(eval_fn, compile=compile_)

    def evaluate(state: train.TrainState) -> dict[str, float]:
        candidates = rs.apply(model.movie_model, state.params["movie_model"], candidate_ids)
        return train.evaluate(eval_step, state.params, test_loader, candidates)

    configs = [
        {"learning_rate": lr, "temperature": t, "seed": args.seed}
        for lr in args.learning_rates
        for t in args.temperatures
    ]
    t0 = time.perf_counter()
    result = train.sweep(
        model,
        optim.adagrad(args.learning_rates[0]),  # each configuration sets its own learning rate
        params=lambda seed: rs.init(model, seed=seed, device=device),
        configs=configs,
        hparams={"temperature": 1.0},
        loader=train_loader,
        epochs=args.epochs,
        eval_fn=evaluate,
        select=args.metric,
        mode="min" if args.metric == "loss" else "max",
        memory_budget=args.memory_budget,
        compile=compile_,
        verbose=not args.json,
    )
    info = {
        "seconds": time.perf_counter() - t0,
        "num_train": train_table.num_rows,
        "num_test": test_table.num_rows,
        "num_candidates": int(candidate_ids.numel()),
        "device": str(device),
        "compiled": compile_,
        "torch": torch.__version__,
    }
    for i, config in enumerate(result.configs):
        run_name = f"lr{config['learning_rate']:g}_t{config['temperature']:g}"
        _cli.save_params(args, result.state(i).params, run_name)
    return result, info


def rows(result: train.SweepResult, info: dict) -> list[dict]:
    """One JSON-ready record per configuration: its values, final metrics, losses, status."""
    failed = {f["index"]: f for f in result.failed}
    try:
        best = result.best_index
    except ValueError:  # every configuration failed
        best = None
    out = []
    for row in result.table():
        i = row["index"]
        history = result.history[i]
        record = {
            "index": i,
            "learning_rate": row["learning_rate"],
            "temperature": row["temperature"],
            "seed": row["seed"],
            **{k: row.get(k) for k in metrics.top_k_metric_names()},
            "train_loss": [h.get("loss") for h in history],
            "epoch_seconds": [h.get("epoch_seconds") for h in history],
            f"{result.metric}_per_epoch": [h.get(result.metric) for h in history],
            "epochs": len(history),
            "status": row["status"],
            "best": i == best,
            "device": info["device"],
            "compiled": info["compiled"],
            "sweep_seconds": info["seconds"],
        }
        if i in failed:
            record["failure"] = {k: failed[i][k] for k in ("epoch", "step", "loss")}
        out.append(record)
    return out


def _grid(result: train.SweepResult, lrs: list[float], temps: list[float]) -> list[list[float]]:
    """``grid[a][b]``: the selected metric of learning rate a, temperature b (NaN if failed)."""
    values = result.final(result.metric)
    failed = {f["index"] for f in result.failed}
    return [
        [
            float("nan") if (a * len(temps) + b) in failed else values[a * len(temps) + b]
            for b in range(len(temps))
        ]
        for a in range(len(lrs))
    ]


def print_table(
    result: train.SweepResult, info: dict, lrs: list[float], temps: list[float]
) -> None:
    metric = result.metric
    grid = _grid(result, lrs, temps)
    print(
        f"\nMovieLens 100K basic retrieval sweep: {len(result.configs)} configurations "
        f"({info['num_train']:,} train / {info['num_test']:,} test pairs, "
        f"{info['num_candidates']:,} candidate titles, {info['device']}, "
        f"{info['seconds']:.1f} s in all)"
    )
    print(f"\n{metric} after the last epoch (rows: learning rate, columns: temperature)")
    corner = "lr \\ T"
    print(f"{corner:>10}" + "".join(f"{t:>10g}" for t in temps))
    try:
        best = result.best_index
    except ValueError:
        best = None
    for a, lr in enumerate(lrs):
        cells = []
        for b, v in enumerate(grid[a]):
            mark = "*" if best == a * len(temps) + b else " "
            cells.append(f"{'failed':>9}{mark}" if math.isnan(v) else f"{v:>9.4f}{mark}")
        print(f"{lr:>10g}" + "".join(cells))
    if result.failed:
        for f in result.failed:
            print(f"config {f['index']} {f['config']} failed: loss {f['loss']} at step {f['step']}")
    if best is None:
        print("\nevery configuration failed")
        return
    config = result.configs[best]
    last = result.history[best][-1]
    print(
        f"\nbest ({metric}): learning rate {config['learning_rate']:g}, temperature "
        f"{config['temperature']:g}  (*)"
    )
    print("  " + "  ".join(f"{k} {last[k]:.4f}" for k in metrics.top_k_metric_names()))
    print("  train loss per epoch: " + ", ".join(f"{h['loss']:,.1f}" for h in result.history[best]))


def plot(path: str, result: train.SweepResult, lrs: list[float], temps: list[float]) -> bool:
    """Write a heat map of the selected metric; False (with a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "note: matplotlib is not installed, so no plot was written "
            "(pip install -e '.[plots]' or pip install matplotlib)",
            file=sys.stderr,
        )
        return False
    grid = _grid(result, lrs, temps)
    fig, ax = plt.subplots(figsize=(1.2 * len(temps) + 2.5, 0.8 * len(lrs) + 1.8))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("temperature")
    ax.set_ylabel("learning rate (Adagrad)")
    ax.set_title(f"MovieLens 100K retrieval: test {result.metric}")
    finite = [v for row in grid for v in row if not math.isnan(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0.0
    for a, row in enumerate(grid):
        for b, v in enumerate(row):
            text = "failed" if math.isnan(v) else f"{v:.3f}"
            color = "black" if math.isnan(v) or v > middle else "white"
            ax.text(b, a, text, ha="center", va="center", color=color, fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result, info = run(args)
    if args.json:
        for record in rows(result, info):
            print(json.dumps(record))
    else:
        print_table(result, info, args.learning_rates, args.temperatures)
    if args.plot and plot(args.plot, result, args.learning_rates, args.temperatures):
        print(f"heat map written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
