"""The TFRS sequential_retrieval recipe on real MovieLens 100K: one short epoch learns something."""

import json
from pathlib import Path

import pytest
from example_modules import load_example

KS = (1, 5, 10, 50, 100)


def _run(example, ml100k_dir, capsys, *extra):
    # 100K explicitly (a 1M copy elsewhere must not slow the test down); eager, one epoch, and a
    # batch of 1,024 instead of the tutorial's 12,800, so that one epoch is 82 steps, not 7.
    argv = ["--dataset", "100k", "--data-dir", str(ml100k_dir), "--no-compile", "--epochs", "1"]
    assert example.main([*argv, "--batch-size", "1024", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_one_epoch_beats_random(ml100k_dir, capsys):
    example = load_example("movielens_sequential")
    result = _run(example, ml100k_dir, capsys)
    for key in ("dataset", "epoch_seconds", "num_train", "num_test", "top_100_excluding_seen"):
        assert key in result
    assert all(f"top_{k}" in result for k in KS)
    assert result["dataset"] == "100k" and result["num_candidates"] == 1682
    # Ratings >= 2 (93,890), minus each user's first: 92,947 examples, split 90/10.
    assert result["num_train"] + result["num_test"] == 92_947
    assert result["num_train"] == 83_652  # floor(0.9 * 92,947)
    assert len(result["epoch_seconds"]) == 1
    hits = [result[f"top_{k}"] for k in KS]
    assert hits == sorted(hits)
    # Random ranking puts the target in the top 100 with probability 100 / 1682 = 0.059. One
    # epoch measured 0.387 (seed 42); popularity (train targets) gives 0.304 on this split.
    assert result["top_100"] > 2 * 100 / 1682, result
    # MovieLens users rate a movie once, so excluding their training targets never excludes a
    # test target and can only move it up.
    for k in KS:
        assert result[f"top_{k}_excluding_seen"] >= result[f"top_{k}"], k


def test_last_split_holds_out_one_example_per_user(ml100k_dir, capsys):
    example = load_example("movielens_sequential")
    result = _run(example, ml100k_dir, capsys, "--split", "last", "--no-mask")
    assert result["num_test"] == 943  # every 100K user has >= 20 ratings, so >= 3 of 2+ stars
    assert result["num_train"] + result["num_test"] == 92_947
    assert result["split"] == "last" and result["mask"] is False
    assert result["top_100"] > 2 * 100 / 1682, result


def test_auto_falls_back_to_100k_and_says_so(ml100k_dir, capsys, tmp_path, monkeypatch):
    example = load_example("movielens_sequential")
    # Only the 100K folder beside it and an empty cache: no 1M anywhere auto looks.
    (tmp_path / "ml-100k").symlink_to(Path(ml100k_dir).resolve(), target_is_directory=True)
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path / "cache"))
    variant, (ratings, _), why = example.load_ratings("auto", str(tmp_path / "ml-100k"))
    assert variant == "100k" and ratings.num_rows == 100_000
    assert "1M files not found" in why


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--batch-size", "0"]])
def test_bad_arguments_fail_clearly(bad):
    example = load_example("movielens_sequential")
    with pytest.raises(ValueError, match="epochs|batch-size"):
        example.main(["--no-compile", *bad])
