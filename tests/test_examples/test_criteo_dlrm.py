"""examples/criteo_dlrm.py: DLRM end to end on synthetic Criteo-like data and on Kaggle TSV."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from example_modules import load_example

SHARED_BENCH = Path(__file__).resolve().parents[3] / "shared" / "bench"
KEYS = {"auc", "log_loss", "epoch_seconds", "rows"}


@pytest.fixture(scope="module")
def example():
    return load_example("criteo_dlrm")


def _line(label, ints, cats) -> str:
    return "\t".join([str(label), *map(str, ints), *cats])


def _tsv_lines(n: int, seed: int = 0) -> list[str]:
    """Kaggle-layout lines: counts with empty (missing) and negative values, 8-hex-digit
    categories with empty ones; clicks more likely when I1 is large and C1 is 'aaaaaaaa'."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        ints = [int(x) for x in rng.integers(-2, 50, size=13)]
        ints = ["" if rng.random() < 0.2 else x for x in ints]
        cats = [f"{int(x):08x}" for x in rng.integers(0, 2**32, size=26)]
        cats[0] = ["aaaaaaaa", "bbbbbbbb", "cccccccc"][i % 3]
        cats = ["" if rng.random() < 0.1 else c for c in cats]
        big = isinstance(ints[0], int) and ints[0] > 25
        label = int(rng.random() < (0.7 if big or cats[0] == "aaaaaaaa" else 0.15))
        lines.append(_line(label, ints, cats))
    return lines


def _run(example, argv, capsys) -> dict:
    assert example.main([*argv, "--json", "--compile", "off"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_synthetic_data_trains_from_parquet_and_beats_chance(example, tmp_path, capsys):
    result = _run(
        example,
        ["--rows", "4000", "--batch-size", "256", "--work-dir", str(tmp_path), "--seed", "0"],
        capsys,
    )
    assert set(result) >= KEYS, result
    assert result["rows"] == 4000 and result["num_test"] == 400
    assert result["data"] == "synthetic"
    assert (tmp_path / "criteo_synthetic_4000.parquet").is_file()  # written, then read back
    # The labels depend on the dense features and on ids of 8 categorical features.
    assert result["auc"] > 0.6, result
    assert result["log_loss"] < result["baseline_log_loss"], result
    assert len(result["epoch_seconds"]) == 1 and result["epoch_seconds"][0] > 0


@pytest.mark.skipif(
    not (SHARED_BENCH / "synth_criteo.py").is_file(), reason="no shared synth_criteo.py"
)
def test_generator_is_the_side_by_side_benchmarks_one(example):
    sys.path.insert(0, str(SHARED_BENCH))
    try:
        import synth_criteo
    finally:
        sys.path.remove(str(SHARED_BENCH))
    ours, theirs = example.synthetic_criteo(3000, seed=0), synth_criteo.make_data(3000, seed=0)
    assert ours["vocab_sizes"] == theirs["vocab_sizes"]
    assert synth_criteo.fingerprint(ours) == synth_criteo.fingerprint(theirs)


def test_kaggle_tsv_with_empty_fields_runs_end_to_end(example, tmp_path, capsys):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(_tsv_lines(600)) + "\n")
    result = _run(
        example,
        [
            "--criteo-path", str(path), "--work-dir", str(tmp_path / "work"),
            "--batch-size", "64", "--epochs", "2",
        ],
        capsys,
    )  # fmt: skip
    assert set(result) >= KEYS, result
    assert result["data"] == "criteo" and result["rows"] == 600
    assert 0.0 <= result["auc"] <= 1.0 and math.isfinite(result["log_loss"])
    assert len(result["epoch_seconds"]) == 2
    assert (tmp_path / "work" / "criteo_train.parquet").is_file()
    # --rows reads only the first lines.
    assert _run(example, ["--criteo-path", str(path), "--rows", "100"], capsys)["rows"] == 100


def test_tsv_reading_and_featurizing(example, tmp_path):
    cats = [f"{i:08x}" for i in range(26)]
    lines = [
        _line(1, [3, "", -2, *[0] * 10], cats),
        _line(0, [""] * 13, [""] * 26),  # every feature missing
        _line(0, [0] * 13, ["ffffffff", *cats[1:]]),
    ]
    path = tmp_path / "t.tsv"
    path.write_text("\n".join(lines) + "\n")
    raw = example.read_criteo_tsv(path)
    assert raw.num_rows == 3
    assert raw["I1"].to_pylist() == [3, None, 0] and raw["I3"].to_pylist() == [-2, None, 0]
    assert raw["C1"].to_pylist() == ["00000000", None, "ffffffff"]
    train, test, vocab_sizes = example.featurize_criteo(raw.slice(0, 2), raw.slice(2))
    # log(1 + x); missing and negative counts are 0.
    np.testing.assert_allclose(train["I1"].to_numpy(), [np.log(4.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(train["I3"].to_numpy(), [0.0, 0.0])
    assert train["I1"].type == pa.float32() and train["C1"].type == pa.int64()
    # A vocabulary per column from the training rows: OOV id 0, then "00000000" and "" (empty
    # is a value of its own); "ffffffff" never occurs in training, so it is out of vocabulary.
    assert vocab_sizes == [3] * 26
    assert sorted(train["C1"].to_pylist()) == [1, 2] and test["C1"].to_pylist() == [0]
    assert test["C2"].to_pylist() == train["C2"].to_pylist()[:1]  # "00000001" as in training
    _, _, hashed = example.featurize_criteo(raw, raw, hash_bins=7)
    assert hashed == [7] * 26


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_line(1, [1] * 13, ["abcdef01"] * 25), r"expected 40 tab-separated fields .* got 39"),
        (_line(2, [1] * 13, ["abcdef01"] * 26), r"the label must be 0 or 1, got '2'"),
        (_line(1, ["x1", *[1] * 12], ["abcdef01"] * 26), r"I1 must be an integer or empty"),
    ],
)
def test_malformed_line_is_named(example, tmp_path, bad, message):
    lines = _tsv_lines(6)
    lines.insert(4, bad)  # line 5 of the file
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"bad\.txt, line 5: {message}"):
        example.read_criteo_tsv(path)
    with pytest.raises(ValueError, match="line 5"):
        example.main(["--criteo-path", str(path), "--json", "--compile", "off"])
    assert example.read_criteo_tsv(path, max_rows=4).num_rows == 4  # the bad line is not read


def test_bad_arguments_fail_clearly(example, tmp_path):
    with pytest.raises(SystemExit):
        example.parse_args(["--epochs", "0"])
    with pytest.raises(SystemExit):
        example.parse_args(["--test-fraction", "1.5"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        example.main(["--criteo-path", str(tmp_path / "missing.txt")])
