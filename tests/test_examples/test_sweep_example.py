"""The sweep example trains a grid of retrieval models at once on real MovieLens 100K."""

import contextlib
import io
import json
import math
from types import SimpleNamespace

import pytest
from example_modules import load_example

GRID = ["--learning-rates", "0.1,0.5", "--temperatures", "0.1,1"]


def _json_lines(module, argv: list[str]) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert module.main(argv) == 0
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def sweep_run(ml100k_dir) -> SimpleNamespace:
    """One run of ``main`` (2 x 2 grid, 1 epoch, eager, --json); keeps what ``run`` returned."""
    example = load_example("sweep")
    kept = {}
    real_run = example.run

    def keeping_run(args):
        kept["run"] = real_run(args)
        return kept["run"]

    example.run = keeping_run
    # Eager and one epoch: the sweep's numbers do not depend on compilation (tested in
    # test_train), and this keeps CI free of compile time.
    argv = ["--data-dir", str(ml100k_dir), "--epochs", "1", "--no-compile", "--json", *GRID]
    rows = _json_lines(example, argv)
    result, info = kept["run"]
    return SimpleNamespace(example=example, rows=rows, result=result, info=info)


@pytest.fixture(scope="module")
def sweep_rows(sweep_run) -> list[dict]:
    return sweep_run.rows


def test_one_json_line_per_configuration(sweep_rows):
    assert [(r["learning_rate"], r["temperature"]) for r in sweep_rows] == [
        (0.1, 0.1),
        (0.1, 1.0),
        (0.5, 0.1),
        (0.5, 1.0),
    ]
    for r in sweep_rows:
        assert r["status"] == "done" and r["epochs"] == 1, r
        ks = [r[f"top_{k}"] for k in (1, 5, 10, 50, 100)]
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in ks), r
        assert ks == sorted(ks), r
        assert len(r["train_loss"]) == 1 and math.isfinite(r["train_loss"][0]), r
        assert r["top_100_per_epoch"] == [r["top_100"]]
    assert sum(r["best"] for r in sweep_rows) == 1


def test_best_configuration_learns(sweep_rows):
    best = next(r for r in sweep_rows if r["best"])
    assert best["top_100"] == max(r["top_100"] for r in sweep_rows)
    # A random ranking puts the positive in the top 100 of 1,682 movies 5.9% of the time; after
    # one epoch the best of this grid (lr 0.1, temperature 1) measured 0.27.
    assert best["top_100"] > 0.2, best
    assert (best["learning_rate"], best["temperature"]) == (0.1, 1.0)


def test_configuration_equals_a_standalone_run(sweep_rows, ml100k_dir):
    # Same seed, same split, same batches, same init: configuration (lr 0.1, temperature 1) of
    # the sweep is the basic retrieval example run on its own with those values.
    single = _json_lines(
        load_example("movielens_retrieval"),
        [
            "--data-dir", str(ml100k_dir), "--epochs", "1", "--no-compile", "--json",
            "--learning-rate", "0.1", "--temperature", "1.0",
        ],
    )[-1]  # fmt: skip
    config = next(r for r in sweep_rows if (r["learning_rate"], r["temperature"]) == (0.1, 1.0))
    assert config["train_loss"][0] == pytest.approx(single["train_loss"][0], rel=1e-5)
    for k in ("top_1", "top_5", "top_10", "top_50", "top_100"):
        assert config[k] == pytest.approx(single[k], abs=1e-3), k


def test_memory_budget_chunks_give_the_same_results(sweep_rows, ml100k_dir):
    # 4 configurations of about 2.7 MB each (4 x the train state) in chunks of 2.
    argv = ["--data-dir", str(ml100k_dir), "--epochs", "1", "--no-compile", "--json", *GRID]
    chunked = _json_lines(load_example("sweep"), [*argv, "--memory-budget", "6M"])
    for whole, part in zip(sweep_rows, chunked):
        assert part["train_loss"][0] == pytest.approx(whole["train_loss"][0], rel=1e-5), part
        assert part["top_100"] == pytest.approx(whole["top_100"], abs=1e-3), part


def test_readable_table_and_plot(sweep_run, capsys, tmp_path):
    example, result, info = sweep_run.example, sweep_run.result, sweep_run.info
    example.print_table(result, info, [0.1, 0.5], [0.1, 1.0])
    out = capsys.readouterr().out
    assert "top_100 after the last epoch (rows: learning rate, columns: temperature)" in out
    assert "best (top_100): learning rate 0.1, temperature 1" in out
    path = tmp_path / "sweep.png"
    written = example.plot(str(path), result, [0.1, 0.5], [0.1, 1.0])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not written and not path.exists()
        assert "matplotlib is not installed" in capsys.readouterr().err
    else:
        assert written and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "bad",
    [
        ["--epochs", "0"],
        ["--metric", "auc"],
        ["--learning-rates", "0.1,x"],
        ["--temperatures", "0"],
    ],
)
def test_bad_arguments_fail_clearly(bad, capsys):
    example = load_example("sweep")
    with pytest.raises(SystemExit):
        example.parse_args(bad)
    assert "error:" in capsys.readouterr().err
