"""TFRS's dcn tutorial (Deep & Cross Network), in torchrs_fn.

Predicts ratings on MovieLens 100K from six features (movie id, user id, zip code, occupation,
gender, age bucket), each embedded in 32 dimensions and concatenated (192 wide). Three models,
as in the tutorial, each trained 8 epochs with Adam 0.01, batch 8192, mean squared error:

* ``dcn``: a full-rank cross layer (``layers.Cross``, glorot-uniform kernel), then Dense 192, 192;
* ``dcn_low_rank``: the same with a rank-20 cross layer (``projection_dim=20``);
* ``dnn``: Dense 192, 192, 192 without a cross layer;

each followed by a linear Dense(1). Every model runs ``--num-runs`` times (seeds 0, 1, ...: the
initialisation changes, the seeded 80/20 split and the batch order stay, as in the tutorial,
whose shuffled training set is cached) and reports the test RMSE's mean and standard deviation.
TFRS's tutorial publishes 0.933 ± 0.001 (DCN), 0.933 ± 0.001 (low rank) and 0.935 ± 0.001 (DNN).

    python examples/movielens_dcn.py                      # table
    python examples/movielens_dcn.py --json               # one JSON line per model
    python examples/movielens_dcn.py --num-runs 1 --epochs 2
    python examples/movielens_dcn.py --checkpoint-dir ckpt    # ckpt/dcn_seed0, ...: resumable
    python examples/movielens_dcn.py --save-params params.trs # params.dcn_seed0.trs, ...

Every (model, seed) run is named ``MODEL_seedN`` (``dcn_seed0``, ``dnn_seed4``, ...). With
``--checkpoint-dir DIR`` each run checkpoints into ``DIR/MODEL_seedN`` at the end of every epoch
(and every ``--checkpoint-every`` steps); started again with the same flags, every run resumes
from its newest valid checkpoint and a finished run is not trained again (``train.Checkpointer``).
``--save-params PATH`` writes each run's trained parameters to ``PATH`` with the run's name
before the suffix (``params.trs`` -> ``params.dcn_seed0.trs``), with ``torchrs_fn.save_tree``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # the examples' shared --checkpoint-dir / --save-params flags

import torchrs_fn as rs
from torchrs_fn import layers, optim, train
from torchrs_fn.data import IntegerLookup, Loader, StringLookup, random_split
from torchrs_fn.data.datasets import movielens
from torchrs_fn.tasks import Ranking

STRING_FEATURES = ("movie_id", "user_id", "user_zip_code", "user_occupation_text")
INT_FEATURES = ("user_gender", "bucketized_user_age")
FEATURES = STRING_FEATURES + INT_FEATURES
EMBEDDING_DIM = 32
TFRS_PUBLISHED = {"dcn": (0.933, 0.001), "dcn_low_rank": (0.933, 0.001), "dnn": (0.935, 0.001)}
MODELS = {
    # name: (use a cross layer, its projection_dim, deep layer sizes)
    "dcn": (True, None, (192, 192)),
    "dcn_low_rank": (True, 20, (192, 192)),
    "dnn": (False, None, (192, 192, 192)),
}


class DCN(rs.Model):
    """Embeddings of the six features, concatenated; an optional cross layer; deep layers; Dense(1)."""

    def __init__(
        self,
        vocab_sizes: dict[str, int],
        use_cross_layer: bool,
        projection_dim: int | None,
        deep_layer_sizes: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleDict(
            {name: layers.Embedding(size, EMBEDDING_DIM) for name, size in vocab_sizes.items()}
        )
        width = EMBEDDING_DIM * len(vocab_sizes)
        # As in the tutorial: tfrs.layers.dcn.Cross(projection_dim=..., kernel_initializer=
        # "glorot_uniform").
        self.cross = (
            layers.Cross(width, projection_dim=projection_dim, kernel_initializer="glorot_uniform")
            if use_cross_layer
            else None
        )
        # Dense(relu) layers, then the linear logit layer: one MLP whose last layer is linear.
        self.deep = layers.MLP(width, [*deep_layer_sizes, 1])
        self.task = Ranking(loss="mean_squared_error", metrics=("rmse",))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` predicted ratings."""
        x = torch.cat([self.embeddings[name](batch[name]) for name in self.embeddings], dim=-1)
        if self.cross is not None:
            x = self.cross(x)
        return self.deep(x).squeeze(-1)

    def compute_loss(self, batch: dict[str, torch.Tensor], training: bool = False) -> torch.Tensor:
        return self.task.loss(batch["user_rating"], self.predict(batch))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder (or zip) with the GroupLens files")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--num-runs", type=int, default=5, help="seeds per model")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--eval-batch-size", type=int, default=4096)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42, help="seeds the split and the batch order")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    _cli.add_device_and_compile_flags(p, no_compile=False)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--json", action="store_true", help="one JSON line per model")
    _cli.add_checkpoint_flags(p, runs="MODEL_seedN, e.g. dcn_seed0")
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        p.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    if args.epochs < 1 or args.num_runs < 1:
        p.error("--epochs and --num-runs must be >= 1")
    return args


def featurize(ratings: pa.Table) -> tuple[dict[str, object], dict[str, int]]:
    """Vocabularies of the six features over all ratings, as the tutorial builds them."""
    lookups: dict[str, object] = {}
    for name in STRING_FEATURES:
        lookups[name] = StringLookup.fit(ratings[name])
    for name in INT_FEATURES:
        lookups[name] = IntegerLookup.fit(pc.cast(ratings[name], pa.int64()))
    return lookups, {name: lk.vocabulary_size() for name, lk in lookups.items()}


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ratings, _ = movielens.load("100k", data_dir=args.data_dir)
    lookups, vocab_sizes = featurize(ratings)

    def encode(table: pa.Table) -> pa.Table:
        columns = {}
        for name in FEATURES:
            column = table[name] if name in STRING_FEATURES else pc.cast(table[name], pa.int64())
            columns[name] = lookups[name](column)
        columns["user_rating"] = pc.cast(table["user_rating"], pa.float32())
        return pa.table(columns)

    train_table, test_table = random_split(
        ratings.select([*FEATURES, "user_rating"]), (0.8, 0.2), seed=args.seed
    )
    train_data, test_data = encode(train_table), encode(test_table)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    results = []
    for name in args.models:
        use_cross, projection_dim, deep = MODELS[name]
        model = DCN(vocab_sizes, use_cross, projection_dim, deep)
        optimizer = optim.adam(args.learning_rate)
        # One step per model, reused by every run, so a compiled step compiles once.
        step = train.make_train_step(model, optimizer, compile=compile_, precision=args.precision)

        def eval_fn(params: rs.Params, batch: dict, model: DCN = model) -> dict:
            predictions = rs.apply(model, params, batch, method="predict")
            return model.task.metrics(batch["user_rating"], predictions)

        eval_step = train.make_eval_step(eval_fn, compile=False, precision=args.precision)
        rmses, epoch_seconds, statuses = [], [], []
        for run_index in range(args.num_runs):
            # The same batch order for every run (the tutorial caches its shuffled train set).
            loader = Loader(
                train_data, args.batch_size, shuffle=True, seed=args.seed, device=device
            )
            params = rs.init(model, seed=run_index, device=device)
            run_name = f"{name}_seed{run_index}"
            state, history = train.fit(
                step, train.init_state(params, optimizer), loader, epochs=args.epochs,
                verbose=False, checkpoint=_cli.checkpointer(args, run_name),
            )  # fmt: skip
            _cli.save_params(args, state.params, run_name)
            test_loader = Loader(test_data, args.eval_batch_size, device=device)
            rmses.append(train.evaluate(eval_step, state.params, test_loader)["rmse"])
            epoch_seconds.append([h["epoch_seconds"] for h in history])
            statuses.append(getattr(step, "status", "compiled" if compile_ else "eager"))
        results.append(
            {
                "model": name,
                "rmse_mean": statistics.fmean(rmses),
                "rmse_std": statistics.pstdev(rmses) if len(rmses) > 1 else 0.0,
                "rmse": rmses,
                "epoch_seconds": epoch_seconds,
                "tfrs_published": TFRS_PUBLISHED[name],
                "num_runs": args.num_runs,
                "epochs": args.epochs,
                "precision": args.precision,
                "train_step": statuses[-1],
                "device": str(device),
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
    print(
        f"\nMovieLens 100K DCN tutorial: test RMSE over {args.num_runs} run(s) of {args.epochs} "
        "epochs"
    )
    print(f"{'model':<14}{'torchrs_fn':>18}{'TFRS tutorial':>18}{'epoch s (median)':>18}")
    for r in results:
        mean, std = TFRS_PUBLISHED[r["model"]]
        later = [s for run in r["epoch_seconds"] for s in run[1:]] or [r["epoch_seconds"][0][0]]
        print(
            f"{r['model']:<14}{r['rmse_mean']:>11.4f} ± {r['rmse_std']:.4f}"
            f"{mean:>11.3f} ± {std:.3f}{statistics.median(later):>18.3f}"
        )
    print(f"train step: {results[-1]['train_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
