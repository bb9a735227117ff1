"""The deep-recommenders example runs on MovieLens 100K, learns, and its one-layer model is the
context-features tutorial's model with timestamps."""

import contextlib
import io
import json

import pytest
from example_modules import load_example

RANDOM_TOP_100 = 100 / 1682  # a random ranking of the 1,682 movies


def _argv(ml100k_dir) -> list[str]:
    return ["--data-dir", str(ml100k_dir), "--json", "--no-compile", "--epochs", "1"]


@pytest.fixture(scope="module")
def one_layer_lines(ml100k_dir) -> list[str]:
    """What the example prints for the 1-layer model after one (eager) epoch; trained once."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert load_example("movielens_deep").main([*_argv(ml100k_dir), "--layers", "1"]) == 0
    return out.getvalue().strip().splitlines()


def test_one_layer_learns_and_prints_the_keys(one_layer_lines):
    assert len(one_layer_lines) == 1
    result = json.loads(one_layer_lines[0])
    for key in ("layers", "layer_sizes", "top_100", "top_50", "top_10", "epoch_seconds"):
        assert key in result, key
    assert result["layers"] == 1 and result["layer_sizes"] == [32]
    assert len(result["epoch_seconds"]) == 1
    assert result["num_candidates"] == 1682
    assert result["num_train"] == 80_000 and result["num_test"] == 20_000
    assert 0 <= result["top_10"] <= result["top_50"] <= result["top_100"] <= 1
    # One epoch already puts the test movie in the top 100 about four times as often as a
    # random ranking does (0.0595); an untrained or miswired tower stays near that baseline.
    assert result["top_100"] > 2.5 * RANDOM_TOP_100, result


def test_one_layer_is_the_context_features_model(one_layer_lines, ml100k_dir, capsys):
    """The tutorial's one-layer deep model is the context-features model with timestamps; the
    example builds it from FeatureTower, the other by hand, on separately written featurisation.
    Same seed, same rows: the same losses and accuracies up to float rounding."""
    deep = json.loads(one_layer_lines[0])
    context = load_example("movielens_context_features")
    assert context.main([*_argv(ml100k_dir), "--timestamps", "on"]) == 0
    reference = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert deep["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)
    for k in ("top_10", "top_50", "top_100"):
        assert deep[k] == pytest.approx(reference[k], abs=2e-4), k


def test_bad_arguments_fail_clearly(ml100k_dir):
    example = load_example("movielens_deep")
    with pytest.raises(ValueError, match="epochs"):
        example.main(["--data-dir", str(ml100k_dir), "--no-compile", "--epochs", "0"])
    with pytest.raises(SystemExit):
        example.main(["--data-dir", str(ml100k_dir), "--layers", "4"])
