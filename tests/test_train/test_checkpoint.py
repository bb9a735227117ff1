"""Checkpoints: exact round trips, corruption caught, keep-K, and bit-exact resume after a crash.

The reference for every resume is an uninterrupted run of the same script: a resumed run must end
with the same bits in every leaf of its state and the same logged losses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import optim, train, tree
from torchrs_fn.data import Loader
from torchrs_fn.serialization import CorruptFileError

# A small two-tower model on synthetic data, 3 epochs of 20 steps (the last batch of each epoch has
# 12 rows), Adam, checkpoints every 3 steps. Run as a script by the crash test, exec'd in process
# by the others.
SCRIPT = '''
import json
import sys
import time

import numpy as np
import pyarrow as pa
import torch

import torchrs_fn as rs
from torchrs_fn import layers, optim, train
from torchrs_fn.data import Loader
from torchrs_fn.tasks import Retrieval

ROWS, BATCH, EPOCHS, EVERY = 316, 16, 3, 3
STEPS_PER_EPOCH = 20


class TwoTower(rs.Model):
    def __init__(self):
        super().__init__()
        self.user_model = layers.Embedding(50, 8)
        self.item_model = torch.nn.Sequential(layers.Embedding(80, 8), torch.nn.Linear(8, 8))
        self.task = Retrieval()

    def compute_loss(self, batch, training=False):
        return self.task(self.user_model(batch["user"]), self.item_model(batch["item"]))


def build():
    rng = np.random.default_rng(7)
    users = rng.integers(0, 50, ROWS)
    table = pa.table({"user": users, "item": (users * 3 + rng.integers(0, 4, ROWS)) % 80})
    loader = Loader(table, BATCH, shuffle=True, seed=3)
    model = TwoTower()
    optimizer = optim.adam(0.05)
    state = train.init_state(rs.init(model, seed=0), optimizer)
    return state, train.make_train_step(model, optimizer, compile=False), loader


def counting(step, pause=0.0, hold_at=0):
    """The step, announcing each call on stdout before it runs it (and counting the calls);
    call ``hold_at`` blocks for good (a barrier that waits for the kill)."""
    def wrapped(state, batch):
        wrapped.calls += 1
        print(f"start {wrapped.calls}", flush=True)
        if pause:
            time.sleep(pause)
        if wrapped.calls == hold_at:
            time.sleep(600)
        return step(state, batch)
    wrapped.calls = 0
    return wrapped


def main(ckpt_dir, out, pause, hold_at):
    state, step, loader = build()
    step = counting(step, pause, hold_at)
    ckpt = train.Checkpointer(ckpt_dir, every_steps=EVERY, keep=100)
    state, history = train.fit(step, state, loader, epochs=EPOCHS, verbose=False, checkpoint=ckpt)
    rs.save_tree(out, {"state": state})
    losses = [h["loss"] for h in history]
    print("result " + json.dumps({"calls": step.calls, "losses": losses, "epochs": len(history)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
'''

TOTAL_STEPS = 60


def _script() -> dict:
    namespace: dict = {"__name__": "checkpoint_script"}
    exec(compile(SCRIPT, "checkpoint_script", "exec"), namespace)
    return namespace


def _assert_trees_equal(a, b) -> None:
    la, lb = tree.leaves(a), tree.leaves(b)
    assert tree.structure(a) == tree.structure(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y)
        else:
            assert x == y


def _nested_state():
    params = {
        "emb": {"weight": torch.randn(7, 3)},
        "dense": {"kernel": torch.randn(3, 2).to(torch.bfloat16), "bias": torch.zeros(2)},
        "ids": torch.arange(5),
        "flag": torch.tensor([True, False]),
    }
    optimizer = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-3))
    state = train.init_state(params, optimizer, hparams={"temperature": 0.5}, seed=3)
    # Non-trivial optimizer moments and step count.
    grads = tree.map(lambda x: torch.ones_like(x) if x.is_floating_point() else x, params)
    _, opt_state = optimizer.update(grads, state.opt_state, params)
    return state._replace(opt_state=opt_state, step=torch.tensor(5))


# (a) round trip ------------------------------------------------------------------------------


def test_train_state_round_trip_is_exact(tmp_path):
    state = _nested_state()
    assert isinstance(state.opt_state, optim.ChainState)
    path = tmp_path / "state.trs"
    rs.save_tree(path, state)
    back = rs.load_tree(path, like=state)
    assert type(back) is train.TrainState and type(back.opt_state) is type(state.opt_state)
    _assert_trees_equal(back, state)
    # The same through a Checkpointer, with the history's floats bit-exact through JSON.
    ckpt = train.Checkpointer(tmp_path / "ck")
    history = [{"epoch": 1, "loss": 0.1 + 0.2, "steps": 3, "note": "x", "tiny": 5e-324}]
    sums = {
        "loss": rs.metrics.MeanState(
            torch.tensor(1 / 3, dtype=torch.float64), torch.tensor(7.0, dtype=torch.float64)
        )
    }
    ckpt.save(
        train.Checkpoint(state, 5, epoch=1, batch=2, loader_epoch=4, history=history, sums=sums)
    )
    got = ckpt.latest(like=state)
    _assert_trees_equal(got.state, state)
    assert got.history == history and (got.step, got.epoch, got.batch, got.loader_epoch) == (
        5,
        1,
        2,
        4,
    )
    _assert_trees_equal(got.sums, sums)


def test_checkpoint_of_another_model_is_an_error_not_a_skip(tmp_path):
    state = _nested_state()
    ckpt = train.Checkpointer(tmp_path)
    ckpt.save(train.Checkpoint(state, 1))
    other = state._replace(params={**state.params, "emb": {"weight": torch.randn(8, 3)}})
    with pytest.raises(ValueError, match=r"emb\.weight"):
        ckpt.latest(like=other)


# (b) corruption is caught --------------------------------------------------------------------


def _saved(tmp_path) -> tuple[Path, bytes]:
    path = tmp_path / "t.trs"
    rs.save_tree(path, {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3, 4)})
    return path, path.read_bytes()


def test_truncated_file_is_detected(tmp_path):
    path, raw = _saved(tmp_path)
    for keep in (len(raw) - 1, len(raw) - 24, 8 + 20, 5):
        path.write_bytes(raw[:keep])
        with pytest.raises(CorruptFileError, match=str(path)) as err:
            rs.load_tree(path)
        assert "truncated" in str(err.value) and err.value.path == path


def test_flipped_byte_in_a_tensor_is_detected(tmp_path):
    path, raw = _saved(tmp_path)
    (n,) = struct.unpack("<Q", raw[:8])
    bad = bytearray(raw)
    bad[8 + n + 1234] ^= 0x01  # inside tensor "a"
    path.write_bytes(bytes(bad))
    with pytest.raises(CorruptFileError, match=rf"{path}.*tensor 0 \(a\).*CRC-32"):
        rs.load_tree(path)


def test_flipped_byte_in_the_header_is_detected(tmp_path):
    path, raw = _saved(tmp_path)
    at = raw.index(b'"shape": [3, 4]') + len('"shape": [')
    bad = bytearray(raw)
    bad[at] = ord("4")  # still valid JSON, a different shape: only the checksum can tell
    path.write_bytes(bytes(bad))
    with pytest.raises(CorruptFileError, match=rf"{path}.*header.*CRC-32"):
        rs.load_tree(path)
    # A flip in the length field or in the trailer is caught too.
    for at in (0, len(raw) - 10):
        bad = bytearray(raw)
        bad[at] ^= 0x10
        path.write_bytes(bytes(bad))
        with pytest.raises(CorruptFileError, match=str(path)):
            rs.load_tree(path)


def test_version_1_files_still_load(tmp_path):
    """A v1 file, built here byte by byte as the old writer did (no checksums, no trailer)."""
    x, y = torch.randn(4, 3), torch.arange(6, dtype=torch.int32)
    raw = [t.numpy().tobytes() for t in (x, y)]
    header = json.dumps(
        {
            "format": "torchrs_fn.tree.v1",
            "skeleton": {"__dict__": {"x": {"__tensor__": True}, "y": {"__tensor__": True}}},
            "tensors": [
                {"dtype": "float32", "shape": [4, 3], "start": 0, "nbytes": len(raw[0])},
                {"dtype": "int32", "shape": [6], "start": len(raw[0]), "nbytes": len(raw[1])},
            ],
        }
    ).encode()
    path = tmp_path / "old.trs"
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw[0] + raw[1])
    back = rs.load_tree(path)
    assert torch.equal(back["x"], x) and torch.equal(back["y"], y)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptFileError, match="truncated"):
        rs.load_tree(path)


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "t.trs"
    rs.save_tree(path, {"a": torch.ones(3)})
    with pytest.raises(TypeError, match="cannot store a object"):
        rs.save_tree(path, {"a": torch.zeros(3), "b": object()})
    assert torch.equal(rs.load_tree(path)["a"], torch.ones(3))  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.trs"]
    # The trailer records the file length and a CRC-32 of the length field + header.
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    magic, total, header_crc, _ = struct.unpack("<8sQII", raw[-24:])
    assert magic == b"TRSTREE2" and total == len(raw) and header_crc == zlib.crc32(raw[: 8 + n])


# (c) Checkpointer keeps K, skips a corrupt newest one ---------------------------------------


def test_checkpointer_keeps_the_last_k_and_skips_corrupt_newest(tmp_path):
    ckpt = train.Checkpointer(tmp_path, keep=2)
    state = _nested_state()
    for step in (3, 6, 9, 12):
        ckpt.save(train.Checkpoint(state._replace(step=torch.tensor(step)), step))
    assert [p.name for p in ckpt.paths()] == ["ckpt-0000000009.trs", "ckpt-0000000012.trs"]
    (tmp_path / "ckpt-0000000015.trs.999.tmp").write_bytes(b"half a file")  # a crash mid-write
    newest = ckpt.paths()[-1]
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=rf"skipping checkpoint {newest}"):
        got = ckpt.latest(like=state)
    assert got.step == 9 and int(got.state.step) == 9 and got.path == ckpt.path_for(9)
    # Truncated: skipped the same way; nothing valid left: None.
    ckpt.path_for(9).write_bytes(ckpt.path_for(9).read_bytes()[:-1])
    with pytest.warns(UserWarning) as record:
        assert ckpt.latest(like=state) is None
    skipped = [str(w.message) for w in record]
    assert len(skipped) == 2 and str(newest) in skipped[0]
    assert str(ckpt.path_for(9)) in skipped[1] and "truncated" in skipped[1]
    # The next save (resuming at step 9 would write 12 again) replaces the corrupt files.
    with pytest.warns(UserWarning, match="deleting .*ckpt-0000000012.trs"):
        ckpt.save(train.Checkpoint(state, 10))
    assert [p.name for p in ckpt.paths()] == ["ckpt-0000000009.trs", "ckpt-0000000010.trs"]


def test_checkpointer_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        train.Checkpointer(tmp_path, keep=0)
    with pytest.raises(ValueError, match="every_steps"):
        train.Checkpointer(tmp_path, every_steps=0)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        train.Checkpointer(tmp_path / "f")


# Loader.epoch_batches -----------------------------------------------------------------------


def test_loader_epoch_batches_replays_an_epoch_from_a_batch():
    table = pa.table({"x": np.arange(50), "y": np.arange(50) * 2.0})
    loader = Loader(table, 8, shuffle=True, seed=5)
    loader.set_epoch(2)
    full = list(loader)
    assert loader.epoch == 3
    tail = list(loader.epoch_batches(2, start=4))
    assert loader.epoch == 3  # untouched
    assert len(tail) == len(full) - 4
    for a, b in zip(tail, full[4:]):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    assert not torch.equal(next(loader.epoch_batches(1, start=4))["x"], full[4]["x"])
    assert list(loader.epoch_batches(2, start=len(loader))) == []
    with pytest.raises(ValueError, match="start"):
        loader.epoch_batches(2, start=len(loader) + 1)


# (d) the crash test --------------------------------------------------------------------------


def _run_to_end(script: Path, ckpt_dir: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(script), str(ckpt_dir), str(out), "0", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("result ")][-1]
    return json.loads(line.removeprefix("result "))


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)

    # Crash: kill the run with SIGKILL once step 25 has finished (epoch 2, batch 5), i.e. past
    # the mid-epoch checkpoint of step 24. Each step pauses 50 ms, and call 30 waits for good,
    # so however late this process reads the child's output the kill lands mid-epoch 2.
    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(crashed), str(tmp_path / "never.trs"), "0.05", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if line.strip() == "start 26":
                assert (crashed / "ckpt-0000000024.trs").is_file()
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.monotonic() < deadline
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
    assert not (tmp_path / "never.trs").exists()
    steps = [int(p.name[5:15]) for p in train.Checkpointer(crashed).paths()]
    newest = max(steps)
    assert newest in (24, 27), steps  # mid-epoch 2

    resumed = _run_to_end(script, crashed, tmp_path / "resumed.trs")
    fresh = _run_to_end(script, tmp_path / "fresh", tmp_path / "fresh.trs")
    assert fresh["calls"] == TOTAL_STEPS
    assert resumed["calls"] == TOTAL_STEPS - newest  # it did resume, from the newest checkpoint
    assert resumed["epochs"] == fresh["epochs"] == 3
    assert resumed["losses"] == fresh["losses"]  # the partial epoch's log sums were restored
    a = rs.load_tree(tmp_path / "resumed.trs")
    b = rs.load_tree(tmp_path / "fresh.trs")
    _assert_trees_equal(a, b)
    assert int(a["state"][2]) == TOTAL_STEPS


# (e) resume from an end-of-epoch and from a mid-epoch checkpoint, in process -----------------


def test_resume_from_end_of_epoch_and_mid_epoch_checkpoints(tmp_path):
    s = _script()
    state, step, loader = s["build"]()
    step = s["counting"](step)
    full_dir = tmp_path / "full"
    ref_state, ref_history = train.fit(
        step,
        state,
        loader,
        epochs=3,
        verbose=False,
        checkpoint=train.Checkpointer(full_dir, every_steps=3, keep=100),
    )
    assert step.calls == TOTAL_STEPS and loader.epoch == 3
    saved = {int(p.name[5:15]) for p in train.Checkpointer(full_dir).paths()}
    assert saved == set(range(3, 61, 3)) | {20, 40}  # every 3 steps and every epoch end

    for resume_at, (epoch, batch) in ((20, (1, 0)), (27, (1, 7))):
        folder = tmp_path / f"from-{resume_at}"
        folder.mkdir()
        name = f"ckpt-{resume_at:010d}.trs"
        shutil.copy(full_dir / name, folder / name)
        found = train.Checkpointer(folder).latest()
        assert (found.epoch, found.batch) == (epoch, batch)
        state, step, loader = s["build"]()
        step = s["counting"](step)
        got_state, got_history = train.fit(
            step,
            state,
            loader,
            epochs=3,
            verbose=False,
            checkpoint=train.Checkpointer(folder, every_steps=3),
        )
        assert step.calls == TOTAL_STEPS - resume_at
        assert loader.epoch == 3
        _assert_trees_equal(got_state, ref_state)
        assert len(got_history) == len(ref_history) == 3
        for got, ref in zip(got_history, ref_history):
            assert got["loss"] == ref["loss"] and got["steps"] == ref["steps"] == 20

    # A finished run resumes to its end without a step; fewer epochs than done is an error.
    state, step, loader = s["build"]()
    step = s["counting"](step)
    done_state, done_history = train.fit(
        step, state, loader, epochs=3, verbose=False, checkpoint=train.Checkpointer(full_dir)
    )
    assert step.calls == 0 and [h["loss"] for h in done_history] == [h["loss"] for h in ref_history]
    _assert_trees_equal(done_state, ref_state)
    with pytest.raises(ValueError, match="past the end"):
        train.fit(
            step, state, loader, epochs=2, verbose=False, checkpoint=train.Checkpointer(full_dir)
        )


def test_resume_with_other_loader_settings_is_refused(tmp_path):
    s = _script()
    state, step, loader = s["build"]()
    ckpt = train.Checkpointer(tmp_path, every_steps=3)
    train.fit(step, state, loader, epochs=1, verbose=False, checkpoint=ckpt)
    other = Loader(loader._table, 32, shuffle=True, seed=3)
    with pytest.raises(ValueError, match="batch_size=16"):
        train.fit(step, state, other, epochs=2, verbose=False, checkpoint=ckpt)
    # Another number of ranks: the checkpoint names the world size it was written with.
    two_ranks = Loader(loader._table, loader.batch_size, shuffle=True, seed=3, rank=0, world_size=2)
    with pytest.raises(ValueError, match="world_size=1"):
        train.fit(step, state, two_ranks, epochs=2, verbose=False, checkpoint=ckpt)
    with pytest.raises(TypeError, match="epoch_batches"):
        train.fit(step, state, list(loader), epochs=2, verbose=False, checkpoint=ckpt)
