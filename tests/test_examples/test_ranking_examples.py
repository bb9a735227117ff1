"""The DCN, listwise and multitask tutorials on real MovieLens 100K: each example's numbers
against the figures TFRS gave on the same recipe (run side by side; docs/benchmarks.md).

CI runs shortened settings where the full recipe takes minutes (stated per test); the full
settings are what docs/benchmarks.md records."""

import json

import pytest
from example_modules import load_example


def _run(name, argv, capsys):
    module = load_example(name)
    assert module.main([*argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_dcn_full_recipe_one_run(ml100k_dir, capsys):
    # The full 8-epoch recipe, one seed instead of five. TFRS on this split (side by side):
    # DCN 0.9466, DNN 0.9518; the tutorial's own split gives 0.933 / 0.935.
    results = _run(
        "movielens_dcn",
        ["--data-dir", str(ml100k_dir), "--num-runs", "1", "--models", "dcn,dnn"],
        capsys,
    )
    by_model = {r["model"]: r for r in results}
    assert set(by_model) == {"dcn", "dnn"}
    assert abs(by_model["dcn"]["rmse_mean"] - 0.9466) <= 0.015, by_model["dcn"]
    assert abs(by_model["dnn"]["rmse_mean"] - 0.9518) <= 0.015, by_model["dnn"]
    assert len(by_model["dcn"]["epoch_seconds"][0]) == 8


def test_listwise_losses_rank_well(ml100k_dir, capsys):
    # 10 epochs instead of 30: NDCG 0.891 (list_mle) and 0.892 (softmax) here, against 0.898
    # after 30 (TFRS's ListMLE after 30 epochs on the same lists: 0.899).
    results = _run(
        "movielens_listwise",
        ["--data-dir", str(ml100k_dir), "--epochs", "10", "--losses", "list_mle,softmax"],
        capsys,
    )
    assert [r["loss"] for r in results] == ["list_mle", "softmax"]
    for r in results:
        assert 0.885 <= r["ndcg"] <= 0.92, r
        assert r["ndcg_at_3"] < r["ndcg"]
        assert r["mrr"] == pytest.approx(1.0)  # every rated item has a label >= 1
        assert r["num_test_lists"] > 800


def test_multitask_weightings_reproduce_the_tutorial(ml100k_dir, capsys):
    results = _run("movielens_multitask", ["--data-dir", str(ml100k_dir)], capsys)
    got = {(r["rating_weight"], r["retrieval_weight"]): r for r in results}
    # TFRS run side by side on this split: (1,0) 0.058 / 1.117, (0,1) 0.238 / 3.815,
    # (1,1) 0.239 / 1.155.
    tfrs = {(1.0, 0.0): (0.058, 1.117), (0.0, 1.0): (0.238, 3.815), (1.0, 1.0): (0.239, 1.155)}
    for weights, (top_100, rmse) in tfrs.items():
        r = got[weights]
        assert abs(r["top_100"] - top_100) <= 0.02, r
        assert abs(r["rmse"] - rmse) <= 0.1 if weights != (0.0, 1.0) else r["rmse"] > 2.5, r
