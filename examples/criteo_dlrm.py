"""DLRM on Criteo-style click logs, end to end: TFRS's ``tfrs.experimental.models.Ranking``.

13 dense and 26 categorical features predict a click. The model is ``models.DLRM``: a bottom
MLP 512-256-16 over the dense features, one 16-dimensional embedding table per categorical
feature, DLRM's dot interaction of the 27 vectors, a top MLP 512-256-1 giving a logit; binary
cross-entropy from logits (``tasks.Ranking(loss="binary_crossentropy", from_logits=True)``),
Adagrad. It trains with ``train.fit`` and is evaluated on a held-out split with the exact AUC
and the log loss (``metrics.ranking``, accumulated over the whole test set by
``train.evaluate``).

Data:

* default, synthetic: ``--rows`` rows of the Criteo-like generator of the side-by-side
  benchmarks (``/work/shared/bench/synth_criteo.py``, reproduced here: log-normal dense counts
  already ``log1p``-ed, power-law ids over 26 vocabularies of 10 to 55,000 ids, labels from a
  logistic model of the dense features and of per-id effects of 8 categorical features). The
  example writes them as Parquet into ``--work-dir`` (a temporary folder by default) and reads
  that file back with pyarrow, as it would a real dataset.
* ``--criteo-path FILE``: the Kaggle Display Advertising Challenge layout (``train.txt``): one
  example per line, ``label \\t I1..I13 \\t C1..C26``; integer features may be empty (missing,
  taken as 0), categorical features are 8-hex-digit strings or empty. Dense features become
  ``log(1 + max(x, 0))`` (negative counts clamped to 0, as Meta's DLRM preprocessing does);
  each categorical column gets a vocabulary fitted on the training split
  (``data.StringLookup``, the empty string being a value of its own, unseen values going to
  the out-of-vocabulary id 0; ``--min-frequency`` drops rare values), or, with
  ``--hash-bins N``, ``data.Hashing(N)`` (salted per column). ``--rows`` reads only the first
  lines. A malformed line (a wrong number of fields, a label other than 0/1, a non-integer
  count) stops the example with an error naming the line.

Both are split at random into train and test (``--test-fraction``, seeded).

    python examples/criteo_dlrm.py                          # synthetic, 200,000 rows
    python examples/criteo_dlrm.py --json                   # one JSON line: auc, log_loss, ...
    python examples/criteo_dlrm.py --rows 1000000 --epochs 2 --compile on
    python examples/criteo_dlrm.py --criteo-path dac/train.txt --rows 2000000 --hash-bins 200000
    python examples/criteo_dlrm.py --epochs 3 --checkpoint-dir ckpt --checkpoint-every 20
    python examples/criteo_dlrm.py --save-params params.trs

With ``--checkpoint-dir`` the run saves a checkpoint at the end of every epoch (and every
``--checkpoint-every`` steps) and, started again with the same flags and data, resumes from the
newest valid one (``train.Checkpointer``, which refuses a loader of another row count, batch
size or seed); a run that already finished resumes straight to evaluation. ``--save-params``
writes the trained parameters with ``torchrs_fn.save_tree``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # the examples' shared --checkpoint-dir / --save-params flags

import torchrs_fn as rs
from torchrs_fn import optim, train
from torchrs_fn.data import Hashing, Loader, StringLookup, random_split
from torchrs_fn.models import DLRM
from torchrs_fn.tasks import Ranking

NUM_DENSE, NUM_SPARSE = 13, 26
DENSE_COLUMNS = [f"I{i}" for i in range(1, NUM_DENSE + 1)]
SPARSE_COLUMNS = [f"C{i}" for i in range(1, NUM_SPARSE + 1)]
TSV_COLUMNS = ["label", *DENSE_COLUMNS, *SPARSE_COLUMNS]
DEFAULT_SYNTHETIC_ROWS = 200_000


# ---------------------------------------------------------------- synthetic data


def synthetic_criteo(n_rows: int, seed: int = 0) -> dict[str, np.ndarray | list[int]]:
    """Criteo-like arrays: ``dense [N, 13] f32, sparse [N, 26] i64, labels [N] f32, vocab_sizes``.

    The recipe (and, for the same seed, the very arrays) of ``synth_criteo.make_data`` of the
    side-by-side benchmarks: vocabulary sizes log-uniform in [10, 100000] (seeded by ``seed``),
    dense features ``log1p`` of log-normal counts, ids drawn from a power law
    ``p(rank) ~ rank^-1.1`` then scattered by a fixed permutation per feature, labels drawn
    from a logistic model of the centred dense features and of per-id biases of the first 8
    categorical features (about 25% positives).
    """
    rng = np.random.default_rng(seed)
    logv = rng.uniform(np.log(10), np.log(100_000), size=NUM_SPARSE)
    sizes = np.floor(np.exp(logv)).astype(np.int64)
    if sizes.sum() > 4_000_000:
        sizes = np.maximum(10, (sizes * 4_000_000) // sizes.sum())
    vocab_sizes = [int(s) for s in sizes]
    rng = np.random.default_rng(seed + 1)
    dense = np.log1p(rng.lognormal(mean=1.0, sigma=1.5, size=(n_rows, NUM_DENSE)))
    dense = dense.astype(np.float32)
    sparse = np.empty((n_rows, NUM_SPARSE), dtype=np.int64)
    for j, v in enumerate(vocab_sizes):
        cdf = np.cumsum(np.arange(1, v + 1, dtype=np.float64) ** -1.1)
        cdf /= cdf[-1]
        ranks = np.minimum(np.searchsorted(cdf, rng.random(n_rows), side="right"), v - 1)
        sparse[:, j] = rng.permutation(v)[ranks]
    w = rng.normal(0.0, 0.3, size=NUM_DENSE)
    logit = (dense - dense.mean(0)) @ w - 1.2
    for j in range(8):
        logit = logit + rng.normal(0.0, 0.5, size=vocab_sizes[j])[sparse[:, j]]
    labels = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return {"dense": dense, "sparse": sparse, "labels": labels, "vocab_sizes": vocab_sizes}


def write_synthetic_parquet(path: Path, n_rows: int, seed: int) -> Path:
    """The synthetic rows as a Parquet file of columns ``label, I1..I13, C1..C26``; the
    vocabulary sizes go into the schema metadata (``vocab_sizes``)."""
    data = synthetic_criteo(n_rows, seed)
    columns = {"label": data["labels"]}
    columns.update({name: data["dense"][:, i] for i, name in enumerate(DENSE_COLUMNS)})
    columns.update({name: data["sparse"][:, i] for i, name in enumerate(SPARSE_COLUMNS)})
    table = pa.table(columns).replace_schema_metadata(
        {"vocab_sizes": json.dumps(data["vocab_sizes"])}
    )
    pq.write_table(table, path)
    return path


# ---------------------------------------------------------------- Criteo TSV


def _line_problem(line: str) -> str | None:
    """What is wrong with one Kaggle-layout line, or None."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != len(TSV_COLUMNS):
        return (
            f"expected {len(TSV_COLUMNS)} tab-separated fields (label, I1..I13, C1..C26), "
            f"got {len(fields)}"
        )
    if fields[0] not in ("0", "1"):
        return f"the label must be 0 or 1, got {fields[0]!r}"
    for name, value in zip(DENSE_COLUMNS, fields[1 : 1 + NUM_DENSE]):
        if value:
            try:
                int(value)
            except ValueError:
                return f"{name} must be an integer or empty, got {value!r}"
    return None


def _find_bad_line(path: Path, max_rows: int | None) -> tuple[int, str, str] | None:
    """``(line number, problem, line)`` of the first malformed line among the first
    ``max_rows`` (all when None); a line-by-line scan, on the error path only."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(itertools.islice(f, max_rows), start=1):
            if not line.strip():
                continue  # pyarrow skips empty lines too
            problem = _line_problem(line)
            if problem is not None:
                return number, problem, line.rstrip("\r\n")
    return None


def _malformed(path: Path, max_rows: int | None, cause: object) -> ValueError:
    """The error for a file pyarrow refused (``cause``): it names the first malformed line."""
    bad = _find_bad_line(path, max_rows)
    if bad is None:
        return ValueError(f"{path}: cannot read it as Kaggle Criteo TSV: {cause}")
    number, problem, line = bad
    return ValueError(f"{path}, line {number}: {problem}: {line[:200]!r}")


def read_criteo_tsv(path: str | Path, max_rows: int | None = None) -> pa.Table:
    """The Kaggle Display Advertising layout as a table: ``label`` int64, ``I1..I13`` int64
    (null when empty), ``C1..C26`` string (null when empty); the first ``max_rows`` lines only
    when given. Raises ``ValueError`` naming the first malformed line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--criteo-path: no such file: {path}")
    types = {"label": pa.int64()}
    types.update({name: pa.int64() for name in DENSE_COLUMNS})
    types.update({name: pa.string() for name in SPARSE_COLUMNS})
    source: Path | io.BytesIO = path
    if max_rows is not None:
        with open(path, "rb") as f:  # only the first lines: the rest may be malformed
            source = io.BytesIO(b"".join(itertools.islice(f, max_rows)))
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=TSV_COLUMNS),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as err:
        raise _malformed(path, max_rows, err) from None
    if table.num_rows == 0:
        raise ValueError(f"{path}: no examples in the file")
    labels = table["label"]
    if labels.null_count or not pc.all(pc.is_in(labels, pa.array([0, 1]))).as_py():
        raise _malformed(path, max_rows, "labels must be 0 or 1")
    return table


def featurize_criteo(
    train_raw: pa.Table,
    test_raw: pa.Table,
    *,
    min_frequency: int = 1,
    hash_bins: int | None = None,
) -> tuple[pa.Table, pa.Table, list[int]]:
    """Raw Kaggle columns -> (train, test) tables of float dense features and int64 ids, and
    the vocabulary size of each categorical column (fitted on ``train_raw`` only)."""
    vocab_sizes: list[int] = []
    encoders = []
    for i, name in enumerate(SPARSE_COLUMNS):
        if hash_bins is not None:
            encoder = Hashing(hash_bins, salt=i)
            vocab_sizes.append(hash_bins)
        else:
            column = pc.fill_null(train_raw[name], "")
            encoder = StringLookup.fit(column, min_frequency=min_frequency)
            vocab_sizes.append(encoder.vocabulary_size())
        encoders.append(encoder)

    def convert(raw: pa.Table) -> pa.Table:
        columns = {"label": pc.cast(raw["label"], pa.float32())}
        for name in DENSE_COLUMNS:
            counts = pc.max_element_wise(pc.fill_null(raw[name], 0), 0)
            columns[name] = pc.cast(pc.ln(pc.add(pc.cast(counts, pa.float64()), 1.0)), pa.float32())
        for name, encoder in zip(SPARSE_COLUMNS, encoders):
            columns[name] = encoder(pc.fill_null(raw[name], ""))
        return pa.table(columns)

    return convert(train_raw), convert(test_raw), vocab_sizes


# ---------------------------------------------------------------- model


def model_table(table: pa.Table) -> pa.Table:
    """``label, I1..I13, C1..C26`` -> ``dense`` ``[13]`` float32 and ``sparse`` ``[26]`` int64
    fixed-size lists and ``label`` float32, the three batch entries the model reads."""
    n = table.num_rows

    def stacked(names: list[str], dtype: np.dtype) -> pa.FixedSizeListArray:
        values = np.empty((n, len(names)), dtype=dtype)
        for i, name in enumerate(names):
            values[:, i] = table[name].to_numpy()
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), len(names))

    return pa.table(
        {
            "dense": stacked(DENSE_COLUMNS, np.float32),
            "sparse": stacked(SPARSE_COLUMNS, np.int64),
            "label": pc.cast(table["label"], pa.float32()),
        }
    )


class CriteoDLRM(rs.Model):
    """``models.DLRM`` with its task: binary cross-entropy from logits, AUC and log loss."""

    def __init__(self, vocab_sizes: list[int], embedding_dim: int = 16) -> None:
        super().__init__()
        self.dlrm = DLRM(
            NUM_DENSE,
            vocab_sizes,
            embedding_dim,
            bottom_units=(512, 256, embedding_dim),
            top_units=(512, 256, 1),
        )
        self.task = Ranking(
            loss="binary_crossentropy", from_logits=True, metrics=("auc", "log_loss")
        )

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` click logits."""
        return self.dlrm(batch["dense"], batch["sparse"])

    def compute_loss(self, batch: dict[str, torch.Tensor], training: bool = False) -> torch.Tensor:
        return self.task.loss(batch["label"], self.predict(batch))


# ---------------------------------------------------------------- run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows",
        type=int,
        default=None,
        help=f"synthetic rows (default {DEFAULT_SYNTHETIC_ROWS:,}), or the first lines of "
        "--criteo-path (default: all)",
    )
    p.add_argument("--criteo-path", default=None, help="Kaggle Criteo TSV (train.txt layout)")
    p.add_argument("--work-dir", default=None, help="where the Parquet goes (default: a temp dir)")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--eval-batch-size", type=int, default=8192)
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=0.1, help="Adagrad learning rate")
    p.add_argument(
        "--min-frequency", type=int, default=1, help="Criteo: rarer values map to the OOV id"
    )
    p.add_argument("--hash-bins", type=int, default=None, help="Criteo: hash ids into N bins")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, split, shuffle, init")
    _cli.add_device_and_compile_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    _cli.add_checkpoint_flags(p)
    args = p.parse_args(argv)
    _cli.check_checkpoint_flags(p, args)
    for name in ("epochs", "batch_size", "eval_batch_size", "embedding_dim", "min_frequency"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.rows is not None and args.rows < 2:
        p.error("--rows must be >= 2 (a train and a test example at least)")
    if args.hash_bins is not None and args.hash_bins < 1:
        p.error("--hash-bins must be >= 1")
    if not 0.0 < args.test_fraction < 1.0:
        p.error("--test-fraction must lie in (0, 1)")
    if not args.learning_rate > 0:
        p.error("--learning-rate must be positive")
    return args


def load_tables(args: argparse.Namespace, work_dir: Path) -> tuple[pa.Table, pa.Table, list[int]]:
    """(train, test) in ``model_table`` layout and the vocabulary sizes."""
    fractions = (1.0 - args.test_fraction, args.test_fraction)
    if args.criteo_path is None:
        rows = args.rows or DEFAULT_SYNTHETIC_ROWS
        path = write_synthetic_parquet(
            work_dir / f"criteo_synthetic_{rows}.parquet", rows, args.seed
        )
        table = pq.read_table(path)
        vocab_sizes = json.loads(table.schema.metadata[b"vocab_sizes"])
        train_table, test_table = random_split(table, fractions, seed=args.seed)
    else:
        raw = read_criteo_tsv(args.criteo_path, args.rows)
        train_raw, test_raw = random_split(raw, fractions, seed=args.seed)
        train_table, test_table, vocab_sizes = featurize_criteo(
            train_raw, test_raw, min_frequency=args.min_frequency, hash_bins=args.hash_bins
        )
        # Featurized once, as Parquet, so a rerun (or another tool) can start from here.
        pq.write_table(train_table, work_dir / "criteo_train.parquet")
        pq.write_table(test_table, work_dir / "criteo_test.parquet")
    if train_table.num_rows == 0 or test_table.num_rows == 0:
        raise ValueError(
            f"too few rows ({train_table.num_rows + test_table.num_rows}) for a train and a "
            f"test split with --test-fraction {args.test_fraction}"
        )
    return model_table(train_table), model_table(test_table), vocab_sizes


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="criteo_dlrm_") as tmp:
        work_dir = Path(args.work_dir) if args.work_dir else Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        train_table, test_table, vocab_sizes = load_tables(args, work_dir)
    data_seconds = time.perf_counter() - start

    train_loader = Loader(
        train_table,
        args.batch_size,
        shuffle=True,
        seed=args.seed,
        # One batch shape: a compiled step never compiles again for a smaller last batch.
        drop_remainder=train_table.num_rows >= args.batch_size,
        device=device,
    )
    test_loader = Loader(test_table, args.eval_batch_size, device=device)

    model = CriteoDLRM(vocab_sizes, args.embedding_dim)
    params = rs.init(model, seed=args.seed, device=device)
    optimizer = optim.adagrad(args.learning_rate)
    compile_ = _cli.COMPILE_CHOICES[args.compile]
    train_step = train.make_train_step(model, optimizer, compile=compile_, precision=args.precision)

    def eval_fn(params: rs.Params, batch: dict) -> dict:
        logits = rs.apply(model, params, batch, method="predict")
        return model.task.metrics(batch["label"], logits.float())

    eval_step = train.make_eval_step(eval_fn, compile=compile_, precision=args.precision)
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
    positives = float(np.mean(test_table["label"].to_numpy()))
    return {
        "auc": test_metrics["auc"],
        "log_loss": test_metrics["log_loss"],
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "rows": train_table.num_rows + test_table.num_rows,
        "num_train": train_table.num_rows,
        "num_test": test_table.num_rows,
        "train_loss": [h["loss"] for h in history],
        # The log loss of always predicting the test click rate: what the model must beat.
        "baseline_log_loss": -(
            positives * math.log(max(positives, 1e-12))
            + (1 - positives) * math.log(max(1 - positives, 1e-12))
        ),
        "test_click_rate": positives,
        "eval_seconds": eval_seconds,
        "data_seconds": data_seconds,
        "data": "criteo" if args.criteo_path else "synthetic",
        "vocab_sizes_sum": int(sum(vocab_sizes)),
        "num_params": sum(p.numel() for p in rs.tree.leaves(state.params)),
        "device": str(device),
        "precision": args.precision,
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
    source = "Criteo" if result["data"] == "criteo" else "synthetic Criteo-like"
    print(
        f"\nDLRM on {source} data ({result['num_train']:,} train / {result['num_test']:,} "
        f"test rows, {result['vocab_sizes_sum']:,} embedding rows, {result['device']})"
    )
    print(f"{'metric':<24}{'test':>10}")
    print(f"{'AUC':<24}{result['auc']:>10.4f}")
    print(f"{'log loss':<24}{result['log_loss']:>10.4f}")
    print(f"{'log loss of the CTR':<24}{result['baseline_log_loss']:>10.4f}")
    print()
    for i, (secs, loss) in enumerate(zip(result["epoch_seconds"], result["train_loss"]), start=1):
        print(f"epoch {i}: {secs:6.2f} s   train loss {loss:.4f}")
    print(f"data: {result['data_seconds']:.2f} s   evaluation: {result['eval_seconds']:.2f} s")
    print(f"train step: {result['train_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
