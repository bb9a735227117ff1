"""The TFRS basic_retrieval recipe on real MovieLens 100K reaches TFRS's accuracy (0.22-0.25)."""

import json

import pytest
from example_modules import load_example


def test_basic_retrieval_matches_tfrs_accuracy(ml100k_dir, capsys):
    example = load_example("movielens_retrieval")
    # Eager: the recipe's numbers do not depend on compilation (tested in test_train), and this
    # keeps CI free of compile time.
    assert example.main(["--data-dir", str(ml100k_dir), "--json", "--no-compile"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.22 <= result["top_100"] <= 0.25, result  # TFRS on the same recipe: 0.237
    assert (
        result["top_1"]
        <= result["top_5"]
        <= result["top_10"]
        <= result["top_50"]
        <= result["top_100"]
    )
    assert len(result["epoch_seconds"]) == 3 and result["eval_seconds"] > 0
    assert result["num_train"] == 80_000 and result["num_test"] == 20_000
    assert result["num_candidates"] == 1682
    assert result["train_loss"][2] < result["train_loss"][0]


def test_readable_table(ml100k_dir, capsys):
    example = load_example("movielens_retrieval")
    example.main(["--data-dir", str(ml100k_dir), "--no-compile", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "factorized top-100 accuracy" in out and "epoch 1:" in out


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--batch-size", "0"]])
def test_bad_arguments_fail_clearly(ml100k_dir, bad):
    example = load_example("movielens_retrieval")
    with pytest.raises(ValueError, match="epochs|batch_size"):
        example.main(["--data-dir", str(ml100k_dir), "--no-compile", *bad])
