"""The TFRS basic_ranking recipe on real MovieLens 100K reaches TFRS's test RMSE (1.11 ± 0.03)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "movielens_ranking.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("movielens_ranking", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_basic_ranking_matches_tfrs_rmse(ml100k_dir, capsys):
    example = _load_example()
    # The default compile="auto" stays eager for this 30-step run: no compile time in CI.
    assert example.main(["--data-dir", str(ml100k_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(result["rmse"] - 1.11) <= 0.03, result
    assert len(result["epoch_seconds"]) == 3
    assert result["num_train"] == 80_000 and result["num_test"] == 20_000
    assert result["train_loss"][2] < result["train_loss"][0]
    assert result["train_step"].startswith("eager:"), result["train_step"]


def test_bad_epochs_is_an_error(ml100k_dir):
    example = _load_example()
    with pytest.raises(SystemExit):
        example.main(["--data-dir", str(ml100k_dir), "--epochs", "0"])
