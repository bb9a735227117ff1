"""train._allocator: glibc's mmap / trim thresholds raised once when a train step is built."""

import pytest

from torchrs_fn import optim, train
from torchrs_fn.train import _allocator
from torchrs_fn.train import step as step_module


class _FakeLibc:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(_allocator, "_state", {})
    fake = _FakeLibc()
    monkeypatch.setattr(_allocator, "_libc", lambda: fake)
    monkeypatch.delenv(_allocator.ENV, raising=False)
    return fake


def test_sets_both_thresholds_once_per_process(fresh):
    assert _allocator.keep_freed_memory() is True
    assert fresh.calls == [(-3, 1 << 30), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert _allocator.keep_freed_memory() is True
    assert len(fresh.calls) == 2


def test_opt_out_leaves_the_allocator_alone(fresh, monkeypatch):
    monkeypatch.setenv(_allocator.ENV, "0")
    assert _allocator.keep_freed_memory() is False
    assert fresh.calls == []


def test_a_refused_setting_is_reported(fresh):
    fresh.result = 0
    assert _allocator.keep_freed_memory() is False


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(_allocator, "_state", {})
    monkeypatch.setattr(_allocator, "_libc", lambda: None)
    assert _allocator.keep_freed_memory() is False


def test_real_glibc_accepts_the_thresholds(monkeypatch):
    monkeypatch.setattr(_allocator, "_state", {})
    monkeypatch.delenv(_allocator.ENV, raising=False)
    if _allocator._libc() is None:
        pytest.skip("needs glibc on Linux (mallopt)")
    assert _allocator.keep_freed_memory() is True


def test_make_train_step_applies_it(monkeypatch):
    seen = []
    monkeypatch.setattr(step_module, "keep_freed_memory", lambda: seen.append(1) or True)
    train.make_train_step(lambda p, b: (p["w"] * b).sum(), optim.sgd(0.1), compile=False)
    assert seen == [1]


def test_make_eval_step_applies_it(monkeypatch):
    seen = []
    monkeypatch.setattr(step_module, "keep_freed_memory", lambda: seen.append(1) or True)
    train.make_eval_step(lambda p, b: {"x": p["w"] * b}, compile=False)
    assert seen == [1]
