"""The default compile choice (``compile="auto"``), with a fake clock and a fake compiler: the
decision is tested on its rule, never on this machine's timing."""

from __future__ import annotations

import pytest
import torch

from torchrs_fn import optim, train
from torchrs_fn.train import AutoCompile


class FakeClock:
    """Each step 'takes' ``step_seconds``: the clock advances when the step runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _auto(step_seconds: float, compile_seconds: float = 20.0, speedup: float = 1.5):
    clock = FakeClock()
    calls = {"eager": 0, "compiled": 0, "compiles": 0}

    def fn(x):
        calls["eager"] += 1
        clock.now += step_seconds
        return x * 2

    def compiler(f, options):
        calls["compiles"] += 1
        assert options["dynamic"] is False

        def compiled(x):
            calls["compiled"] += 1
            return f(x) + 0  # the same values, counted apart

        return compiled

    auto = AutoCompile(
        fn, compile_seconds=compile_seconds, speedup=speedup, clock=clock, compiler=compiler
    )
    return auto, calls


def test_short_run_stays_eager():
    # 30 steps of 0.15 s save at most 30 * 0.05 = 1.5 s: never worth a 20 s compile.
    auto, calls = _auto(step_seconds=0.15)
    auto.plan(30)
    x = torch.ones(4)
    for _ in range(30):
        assert torch.equal(auto(x), x * 2)
    assert calls["compiles"] == 0 and calls["compiled"] == 0
    assert auto.status.startswith("eager:")


def test_long_run_compiles_after_the_warm_up_and_the_first_timed_step():
    # 3000 steps of 0.15 s save ~150 s > 20 s: compile at the first decision (call 2).
    auto, calls = _auto(step_seconds=0.15)
    auto.plan(3000)
    x = torch.ones(4)
    for _ in range(10):
        assert torch.equal(auto(x), x * 2)
    assert calls["compiles"] == 1
    assert calls["compiled"] == 8  # calls 3..10
    assert auto.status.startswith("compiled:")


def test_the_rule_is_remaining_steps_times_the_saving_against_the_compile_cost():
    # saving per step = 0.3 * (1 - 1/1.5) = 0.1 s; with 20 s to earn back the boundary is 200
    # steps left at the decision (call 2 leaves plan - 2).
    below, calls_below = _auto(step_seconds=0.3)
    below.plan(202)  # 200 left at call 2: gain 20 s, not more than the cost
    above, calls_above = _auto(step_seconds=0.3)
    above.plan(203)  # 201 left: gain 20.1 s
    x = torch.ones(2)
    for auto in (below, above):
        for _ in range(2):
            auto(x)
    assert calls_below["compiles"] == 0
    assert calls_above["compiles"] == 1


def test_unknown_run_length_compiles_when_the_saving_so_far_equals_the_cost():
    # No plan: compile once timed_steps * 0.1 s > 20 s, i.e. at the 201st timed step (call 202).
    auto, calls = _auto(step_seconds=0.3)
    x = torch.ones(2)
    for _ in range(201):
        auto(x)
    assert calls["compiles"] == 0
    auto(x)
    assert calls["compiles"] == 1
    assert "unknown" in auto.status


def test_one_graph_other_shapes_run_eagerly():
    auto, calls = _auto(step_seconds=1.0)
    auto.plan(1000)
    full, last = torch.ones(8), torch.ones(3)
    for _ in range(3):
        auto(full)
    assert calls["compiles"] == 1
    compiled_before = calls["compiled"]
    assert torch.equal(auto(last), last * 2)  # the smaller last batch: eager, no recompile
    assert calls["compiles"] == 1 and calls["compiled"] == compiled_before
    auto(full)
    assert calls["compiled"] == compiled_before + 1


def test_a_changing_shape_is_not_timed_as_a_steady_step():
    # Alternating shapes never give two equal signatures in a row: nothing is decided.
    auto, calls = _auto(step_seconds=10.0)
    auto.plan(10_000)
    for i in range(6):
        auto(torch.ones(2 + i))
    assert calls["compiles"] == 0 and auto.eager_step_seconds is None


def test_under_transforms_and_outer_compile_it_is_the_plain_function():
    auto, calls = _auto(step_seconds=1.0)
    auto.plan(10_000)
    x = torch.randn(5)
    g = torch.func.grad(lambda v: auto(v).sum())(x)
    assert torch.equal(g, torch.full_like(x, 2.0))
    out = torch.vmap(auto)(torch.ones(3, 5))
    assert torch.equal(out, torch.full((3, 5), 2.0))
    assert calls["compiles"] == 0 and auto.eager_step_seconds is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="speedup"):
        AutoCompile(lambda x: x, speedup=1.0)
    with pytest.raises(ValueError, match="steps >= 0"):
        AutoCompile(lambda x: x).plan(-1)
    with pytest.raises(TypeError, match="'auto', True, False"):
        train.make_train_step(lambda p, b: p["w"].sum(), optim.sgd(0.1), compile="yes")


def _tiny_problem():
    params = {"w": torch.zeros(3)}
    batches = [
        {"x": torch.randn(4, 3, generator=torch.Generator().manual_seed(i))} for i in range(5)
    ]

    def loss_fn(p, b):
        return ((b["x"] @ p["w"] - 1.0) ** 2).mean()

    return params, batches, loss_fn


def test_default_is_auto_and_fit_plans_the_run():
    params, batches, loss_fn = _tiny_problem()
    opt = optim.sgd(0.1)
    step = train.make_train_step(loss_fn, opt)
    assert isinstance(step, AutoCompile)
    assert isinstance(train.make_eval_step(lambda p, b: {"x": b["x"].sum(1)}), AutoCompile)
    state, _ = train.fit(step, train.init_state(params, opt), batches, epochs=3, verbose=False)
    assert step.remaining == 0  # fit planned 15 steps and made them
    # A tiny run stays eager: the same parameters as compile=False, bit for bit.
    eager = train.make_train_step(loss_fn, opt, compile=False)
    ref, _ = train.fit(eager, train.init_state(params, opt), batches, epochs=3, verbose=False)
    assert torch.equal(state.params["w"], ref.params["w"])
    assert step.compiled is None and step.status.startswith("eager:")


@pytest.mark.compile
def test_auto_with_the_real_compiler_agrees_with_eager(monkeypatch):
    # A zero compile cost makes the real torch.compile kick in at the first decision.
    monkeypatch.setattr(AutoCompile, "COMPILE_SECONDS", 0.0)
    params, batches, loss_fn = _tiny_problem()
    opt = optim.adam(0.05)
    step = train.make_train_step(loss_fn, opt)
    state, _ = train.fit(step, train.init_state(params, opt), batches, epochs=2, verbose=False)
    assert step.compiled is not None
    eager = train.make_train_step(loss_fn, opt, compile=False)
    ref, _ = train.fit(eager, train.init_state(params, opt), batches, epochs=2, verbose=False)
    assert torch.allclose(state.params["w"], ref.params["w"], rtol=1e-5, atol=1e-6)


def test_a_step_slowed_by_other_work_does_not_trigger_a_compile():
    # A 30-step run whose steps take 0.15 s, one of them slowed to 5 s by a busy machine: the
    # saving is judged on the fastest step, so the run stays eager (a mean would compile).
    clock = FakeClock()
    durations = iter([0.15, 0.15, 5.0] + [0.15] * 27)
    compiles = []

    def fn(x):
        clock.now += next(durations)
        return x

    auto = AutoCompile(fn, clock=clock, compiler=lambda f, o: compiles.append(1) or f)
    auto.plan(30)
    for _ in range(30):
        auto(torch.ones(2))
    assert not compiles and auto.eager_step_seconds == pytest.approx(0.15)
