"""The TFRS basic_ranking recipe on real MovieLens 100K reaches TFRS's test RMSE (1.11 ± 0.03)."""

import json

import pytest
from example_modules import load_example


def test_basic_ranking_matches_tfrs_rmse(ml100k_dir, capsys):
    example = load_example("movielens_ranking")
    # The default compile="auto" stays eager for this 30-step run: no compile time in CI.
    assert example.main(["--data-dir", str(ml100k_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(result["rmse"] - 1.11) <= 0.03, result
    assert len(result["epoch_seconds"]) == 3
    assert result["num_train"] == 80_000 and result["num_test"] == 20_000
    assert result["train_loss"][2] < result["train_loss"][0]
    assert result["train_step"].startswith("eager:"), result["train_step"]


def test_bad_epochs_is_an_error(ml100k_dir):
    example = load_example("movielens_ranking")
    with pytest.raises(SystemExit):
        example.main(["--data-dir", str(ml100k_dir), "--epochs", "0"])
