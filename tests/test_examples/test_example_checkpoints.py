"""The examples' ``--checkpoint-dir`` and ``--save-params`` (``examples/_cli.py``) on real
MovieLens 100K: a stopped run resumes to the uninterrupted run's numbers, a finished run is not
trained again, a multi-run example keeps one checkpoint folder and one parameter file per run, and
the saved parameters load back (``torchrs_fn.load_tree``) as the trained ones.

Eager steps (``--compile off``): a resumed run is then bit-identical to an uninterrupted one
(``train.fit``'s contract), and CI pays no compile time."""

import json
from pathlib import Path

import pytest
import torch
from example_modules import load_example

import torchrs_fn as rs
from torchrs_fn import optim, train

# Every example that trains; sweep.py has --save-params only (train.sweep does not checkpoint).
TRAINING_EXAMPLES = [
    "criteo_dlrm",
    "custom_model",
    "movielens_context_features",
    "movielens_dcn",
    "movielens_deep",
    "movielens_listwise",
    "movielens_multitask",
    "movielens_ranking",
    "movielens_retrieval",
    "movielens_sequential",
    "serving",
]


def _run(module, argv: list[str], capsys) -> list[dict]:
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _shapes(params: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in rs.tree.flatten_dict(params).items()}


def _assert_same_tensors(a: dict, b: dict) -> None:
    flat_a, flat_b = rs.tree.flatten_dict(a), rs.tree.flatten_dict(b)
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        assert torch.equal(flat_a[k].cpu(), flat_b[k].cpu()), k


def _checkpoints(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("name", TRAINING_EXAMPLES)
def test_every_training_example_takes_the_flags(name):
    example = load_example(name)
    args = example.parse_args(["--checkpoint-dir", "ck", "--save-params", "p.trs"])
    assert (args.checkpoint_dir, args.checkpoint_every, args.save_params) == ("ck", None, "p.trs")
    with pytest.raises(SystemExit):
        example.parse_args(["--checkpoint-every", "5"])  # needs --checkpoint-dir


def test_sweep_takes_save_params_only():
    example = load_example("sweep")
    assert example.parse_args(["--save-params", "p.trs"]).save_params == "p.trs"
    with pytest.raises(SystemExit):
        example.parse_args(["--checkpoint-dir", "ck"])


def test_params_path_inserts_the_run_name():
    cli = load_example("_cli")
    assert cli.params_path("out/params.trs") == Path("out/params.trs")
    assert cli.params_path("out/params.trs", "dcn_seed0") == Path("out/params.dcn_seed0.trs")
    assert cli.params_path("params", "list_mle") == Path("params.list_mle")


def test_ranking_resumes_to_the_uninterrupted_run(ml100k_dir, tmp_path, capsys):
    example = load_example("movielens_ranking")
    # On the CPU, where resuming is bit-identical (on a GPU it agrees to rounding: docs/reliability.md).
    base = [
        "--data-dir",
        str(ml100k_dir),
        "--device",
        "cpu",
        "--compile",
        "off",
        "--json",
        "--epochs",
    ]
    ckpt, params_file = tmp_path / "ckpt", tmp_path / "out" / "params.trs"
    (whole,) = _run(example, [*base, "2"], capsys)

    (first,) = _run(example, [*base, "1", "--checkpoint-dir", str(ckpt)], capsys)
    assert _checkpoints(ckpt) == ["ckpt-0000000010.trs"]  # 80,000 rows / 8,192: 10 steps

    resume = [*base, "2", "--checkpoint-dir", str(ckpt), "--save-params", str(params_file)]
    (resumed,) = _run(example, resume, capsys)
    assert _checkpoints(ckpt) == ["ckpt-0000000010.trs", "ckpt-0000000020.trs"]
    assert resumed["train_loss"] == whole["train_loss"]
    assert resumed["rmse"] == whole["rmse"]
    assert resumed["epoch_seconds"][0] == first["epoch_seconds"][0]  # epoch 1 was not rerun

    # Finished: the rerun resumes at its last epoch, trains nothing and writes no checkpoint.
    newest = ckpt / "ckpt-0000000020.trs"
    written = newest.stat().st_mtime_ns
    (again,) = _run(example, resume, capsys)
    assert again["epoch_seconds"] == resumed["epoch_seconds"]  # the checkpoint's history
    assert again["rmse"] == resumed["rmse"]
    assert newest.stat().st_mtime_ns == written
    assert _checkpoints(ckpt) == ["ckpt-0000000010.trs", "ckpt-0000000020.trs"]

    # --save-params: the model's parameter tree, holding the trained (final) values.
    saved = rs.load_tree(params_file)
    model = example.RankingModel(
        saved["user_embeddings"]["weight"].shape[0], saved["movie_embeddings"]["weight"].shape[0]
    )
    fresh = rs.init(model)
    assert _shapes(saved) == _shapes(fresh)
    final = train.Checkpointer(ckpt).latest(like=train.init_state(fresh, optim.adagrad(0.1)))
    _assert_same_tensors(saved, final.state.params)


def test_dcn_checkpoints_and_saves_each_run(ml100k_dir, tmp_path, capsys):
    example = load_example("movielens_dcn")
    base = ["--data-dir", str(ml100k_dir), "--device", "cpu", "--models", "dnn", "--compile", "off"]
    base.append("--json")
    ckpt, params_file = tmp_path / "ckpt", tmp_path / "params.trs"
    (whole,) = _run(example, [*base, "--num-runs", "2", "--epochs", "2"], capsys)

    # Stopped after one epoch of the first seed's run ...
    _run(
        example, [*base, "--num-runs", "1", "--epochs", "1", "--checkpoint-dir", str(ckpt)], capsys
    )
    assert _checkpoints(ckpt) == ["dnn_seed0"]
    assert _checkpoints(ckpt / "dnn_seed0") == ["ckpt-0000000010.trs"]

    # ... started again with the whole recipe: seed 0 resumes at epoch 2, seed 1 starts afresh.
    full = [*base, "--num-runs", "2", "--epochs", "2", "--checkpoint-dir", str(ckpt)]
    (resumed,) = _run(example, [*full, "--save-params", str(params_file)], capsys)
    assert resumed["rmse"] == whole["rmse"]
    assert _checkpoints(ckpt) == ["dnn_seed0", "dnn_seed1"]
    for run in ("dnn_seed0", "dnn_seed1"):
        assert _checkpoints(ckpt / run)[-1] == "ckpt-0000000020.trs"

    # Both runs finished: a rerun trains neither (same history, same numbers).
    (again,) = _run(example, full, capsys)
    assert again["epoch_seconds"] == resumed["epoch_seconds"]
    assert again["rmse"] == resumed["rmse"]

    # One parameter file per run, each the run's trained parameters.
    assert sorted(p.name for p in tmp_path.glob("params.*.trs")) == [
        "params.dnn_seed0.trs",
        "params.dnn_seed1.trs",
    ]
    saved = {
        run: rs.load_tree(tmp_path / f"params.{run}.trs") for run in ("dnn_seed0", "dnn_seed1")
    }
    vocab_sizes = {
        name: saved["dnn_seed0"]["embeddings"][name]["weight"].shape[0] for name in example.FEATURES
    }
    use_cross, projection_dim, deep = example.MODELS["dnn"]
    fresh = rs.init(example.DCN(vocab_sizes, use_cross, projection_dim, deep))
    like = train.init_state(fresh, optim.adam(0.01))
    for run, params in saved.items():
        assert _shapes(params) == _shapes(fresh)
        _assert_same_tensors(params, train.Checkpointer(ckpt / run).latest(like=like).state.params)
    flat0, flat1 = (rs.tree.flatten_dict(saved[run]) for run in ("dnn_seed0", "dnn_seed1"))
    assert any(not torch.equal(flat0[k], flat1[k]) for k in flat0)  # two seeds, two models


def test_sweep_saves_every_configuration(ml100k_dir, tmp_path, capsys):
    example = load_example("sweep")
    argv = ["--data-dir", str(ml100k_dir), "--epochs", "1", "--no-compile", "--json"]
    argv += ["--learning-rates", "0.1,0.5", "--temperatures", "1"]
    rows = _run(example, [*argv, "--save-params", str(tmp_path / "params.trs")], capsys)
    assert [(r["learning_rate"], r["temperature"]) for r in rows] == [(0.1, 1.0), (0.5, 1.0)]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["params.lr0.1_t1.trs", "params.lr0.5_t1.trs"]
    a, b = (rs.load_tree(tmp_path / n) for n in names)
    assert _shapes(a) == _shapes(b) and set(a) == {"user_model", "movie_model"}
    assert not torch.equal(a["user_model"]["weight"], b["user_model"]["weight"])
