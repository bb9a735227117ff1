"""The composability matrix: every public loss, metric and step under every transform.

The cases come from one list, ``tests/composability_cases.py``: each is checked against its
independent reference under ``grad`` (every floating-point argument), ``vmap`` over inputs and over
hyperparameters, ``vmap`` of ``grad``, ``torch.compile(fullgraph=True)`` and ``torch.compile`` of
``vmap`` of ``grad``. A transform that does not apply says why in the list (and the docs table); a
refused one must raise the error the list names; a known bug is a strict expected failure.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

import torchrs_fn
from torchrs_fn import optim, train, tree
from torchrs_fn.tasks import retrieval_loss


def _load_cases():
    name = "composability_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
    return sys.modules[name]


cc = _load_cases()
CASES = cc.CASES
LANES = 3  # vmap over inputs: seeds 0, 1, 2
PUBLIC_MODULES = ("tasks", "metrics", "train")


# --- helpers ---------------------------------------------------------------------------------


def _is_float(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _float_leaves(out) -> list[torch.Tensor]:
    return [x for x in tree.leaves(out) if _is_float(x)]


def _assert_close(got, want, case, what: str) -> None:
    assert tree.structure(got) == tree.structure(want), (
        f"{case.id} {what}: structure {tree.structure(got)} != reference {tree.structure(want)}"
    )
    for i, (g, w) in enumerate(zip(tree.leaves(got), tree.leaves(want))):
        where = f"{case.id} {what}, leaf {i}"
        assert isinstance(g, torch.Tensor), f"{where}: got {type(g).__name__}, not a tensor"
        assert g.shape == w.shape, f"{where}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        assert g.dtype == w.dtype, f"{where}: dtype {g.dtype} != {w.dtype}"
        if g.is_floating_point():
            assert torch.allclose(g, w, rtol=case.rtol, atol=case.atol), (
                f"{where}: max abs difference {(g - w).abs().max().item():.3g}\n"
                f"got {g}\nreference {w}"
            )
        else:
            assert torch.equal(g, w), f"{where}: {g} != {w}"


def _base(case) -> tuple:
    return case.make_inputs(0)


def _input_lanes(case) -> list[tuple]:
    """Inputs from seeds 0..LANES-1, hyperparameters held at seed 0's values."""
    base = _base(case)
    lanes = []
    for seed in range(LANES):
        args = case.make_inputs(seed)
        lanes.append(tuple(base[i] if i in case.hparam_argnums else a for i, a in enumerate(args)))
    return lanes


def _hparam_lanes(case) -> list[tuple]:
    """Seed 0's inputs, each hyperparameter taking its K values in turn."""
    base, values = _base(case), case.hparam_values()
    k = values[0].shape[0]
    lanes = []
    for lane in range(k):
        args = list(base)
        for argnum, stacked in zip(case.hparam_argnums, values):
            args[argnum] = tree.map(lambda x, lane=lane: x[lane], stacked)
        lanes.append(tuple(args))
    return lanes


def _stack(lanes: list[tuple], batched: set[int]) -> tuple[tuple, tuple]:
    """The lanes stacked along a new leading axis for the batched arguments, and the in_dims."""
    args = tuple(
        tree.stack([lane[i] for lane in lanes]) if i in batched else lanes[0][i]
        for i in range(len(lanes[0]))
    )
    return args, tuple(0 if i in batched else None for i in range(len(args)))


def _inputs_batched(case) -> set[int]:
    return set(range(len(_base(case)))) - set(case.hparam_argnums)


def _lane(out, k: int):
    return tree.map(lambda x: x[k], out)


def _cotangents(case) -> list[torch.Tensor]:
    """Fixed random weights for the float outputs: ``grad`` checks a vector-Jacobian product."""
    out = case.grad_outputs(case.reference(*_base(case)))
    g = torch.Generator().manual_seed(7)
    return [torch.randn(x.shape, generator=g, dtype=x.dtype) for x in _float_leaves(out)]


def _scalar(case, fn, cotangents):
    def scalar(*args):
        leaves = _float_leaves(case.grad_outputs(fn(*args)))
        assert len(leaves) == len(cotangents), "output structure differs from the reference"
        return sum((x * ct).sum() for x, ct in zip(leaves, cotangents))

    return scalar


def _reference_grads(case, args: tuple, cotangents) -> tuple:
    """Plain autograd through the reference: ``d(sum ct * out) / d args[argnums]``."""
    args = list(args)
    for i in case.grad_argnums:
        args[i] = tree.map(lambda x: x.detach().clone().requires_grad_(), args[i])
    total = _scalar(case, case.reference, cotangents)(*args)
    leaves = [leaf for i in case.grad_argnums for leaf in tree.leaves(args[i])]
    if isinstance(total, torch.Tensor) and total.requires_grad:
        grads = torch.autograd.grad(total, leaves, allow_unused=True, materialize_grads=True)
    else:  # the reference output does not depend on the inputs (piecewise-constant metrics)
        grads = [torch.zeros_like(leaf) for leaf in leaves]
    out, at = [], 0
    for i in case.grad_argnums:
        n = len(tree.leaves(args[i]))
        out.append(
            tree.unflatten(tree.structure(args[i]), [g.detach() for g in grads[at : at + n]])
        )
        at += n
    return tuple(out)


def _assert_grads(case, got: tuple, want: tuple, lane: str = "") -> None:
    for argnum, g, w in zip(case.grad_argnums, got, want):
        _assert_close(g, w, case, f"gradient of argument {argnum}{lane}")
        if case.nonzero_grad:
            assert any(bool(x.abs().max() > 0) for x in tree.leaves(w)), (
                f"{case.id}: the reference gradient of argument {argnum} is zero: a vacuous check"
            )


# --- the transforms --------------------------------------------------------------------------


def check_grad(case) -> None:
    args, cts = _base(case), _cotangents(case)
    for i, a in enumerate(args):
        if i not in case.grad_argnums:
            assert not any(_is_float(x) for x in tree.leaves(a)), (
                f"{case.id}: argument {i} is floating-point but not in grad_argnums"
            )
    got = torch.func.grad(_scalar(case, case.fn, cts), argnums=case.grad_argnums)(*args)
    _assert_grads(case, got, _reference_grads(case, args, cts))


def _vmap_lanes(case, lanes: list[tuple], batched: set[int], what: str) -> None:
    args, in_dims = _stack(lanes, batched)
    # vmap returns tensors only: map the output's tensor leaves (None fields, e.g. a state
    # without a random key, drop out) and compare the structure eagerly.
    got = torch.vmap(lambda *a: tuple(tree.leaves(case.fn(*a))), in_dims=in_dims)(*args)
    structure = tree.structure(case.fn(*lanes[0]))
    for k, lane in enumerate(lanes):
        _assert_close(
            tree.unflatten(structure, _lane(got, k)), case.reference(*lane), case, f"{what} {k}"
        )


def check_vmap_inputs(case) -> None:
    _vmap_lanes(case, _input_lanes(case), _inputs_batched(case), "vmap lane")


def check_vmap_hparams(case) -> None:
    _vmap_lanes(case, _hparam_lanes(case), set(case.hparam_argnums), "vmap hyperparameter lane")


def _vmap_grad(case, cts, in_dims):
    return torch.vmap(
        torch.func.grad(_scalar(case, case.fn, cts), argnums=case.grad_argnums), in_dims=in_dims
    )


def _assert_lane_grads(case, got, lanes, cts) -> None:
    for k, lane in enumerate(lanes):
        _assert_grads(case, _lane(got, k), _reference_grads(case, lane, cts), f" (lane {k})")


def check_vmap_grad(case) -> None:
    lanes, cts = _input_lanes(case), _cotangents(case)
    args, in_dims = _stack(lanes, _inputs_batched(case))
    _assert_lane_grads(case, _vmap_grad(case, cts, in_dims)(*args), lanes, cts)


def check_compile(case) -> None:
    args = _base(case)
    got = torch.compile(case.fn, fullgraph=True, dynamic=False)(*args)
    _assert_close(got, case.reference(*args), case, "compiled value")


def check_compile_vmap_grad(case) -> None:
    lanes, cts = _input_lanes(case), _cotangents(case)
    args, in_dims = _stack(lanes, _inputs_batched(case))
    compiled = torch.compile(_vmap_grad(case, cts, in_dims), fullgraph=True, dynamic=False)
    _assert_lane_grads(case, compiled(*args), lanes, cts)


CHECKS = {
    "grad": check_grad,
    "vmap_inputs": check_vmap_inputs,
    "vmap_hparams": check_vmap_hparams,
    "vmap_grad": check_vmap_grad,
    "compile": check_compile,
    "compile_vmap_grad": check_compile_vmap_grad,
}
COMPILED = ("compile", "compile_vmap_grad")


def _run(case, transform: str) -> None:
    status, check = case.transforms[transform], CHECKS[transform]
    if isinstance(status, cc.Checked):
        check(case)
    elif isinstance(status, cc.Raises):
        with pytest.raises(status.error, match=status.match):
            check(case)
    elif isinstance(status, cc.KnownBug):
        try:
            check(case)
        except status.error as e:
            if not re.search(status.match, str(e)):
                raise
            pytest.xfail(f"known bug: {status.reason}")
        pytest.fail(
            f"{case.id} under {transform} passes now: the known bug ({status.reason}) looks "
            "fixed; mark it Checked in tests/composability_cases.py"
        )
    else:  # NotApplicable cases are not collected
        raise AssertionError(f"unexpected status {status!r}")


def _params(transforms) -> list:
    return [
        pytest.param(case, t, id=f"{case.id}-{t}")
        for case in CASES
        for t in transforms
        if not isinstance(case.transforms[t], cc.NotApplicable)
    ]


@pytest.mark.parametrize(("case", "transform"), _params([t for t in CHECKS if t not in COMPILED]))
def test_matrix(case, transform):
    _run(case, transform)


@pytest.fixture
def fresh_dynamo():
    # The compiled callables share code objects (torch.vmap's wrapper, the checks' closures), so
    # without a reset the cases would pile up recompiles against dynamo's recompile limit.
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.compile
@pytest.mark.parametrize(("case", "transform"), _params(COMPILED))
def test_matrix_compiled(case, transform, fresh_dynamo):
    _run(case, transform)


# --- the list itself -------------------------------------------------------------------------


def _public_names() -> set[str]:
    names = set()
    for module in PUBLIC_MODULES:
        names |= {f"{module}.{n}" for n in getattr(torchrs_fn, module).__all__}
    return names


def test_every_public_name_is_in_the_matrix_or_exempt():
    public = _public_names()
    covered = {case.name for case in CASES}
    exempt = set(cc.NOT_FUNCTIONS_OF_TENSORS)
    missing = sorted(public - covered - exempt)
    assert not missing, (
        f"public names {missing} are not in the composability matrix: add a Case to CASES in "
        "tests/composability_cases.py (or, if they are not functions of tensors, an entry with "
        "the reason to NOT_FUNCTIONS_OF_TENSORS)"
    )
    assert not covered & exempt, f"both a case and exempt: {sorted(covered & exempt)}"
    stale = sorted((covered | exempt) - public)
    assert not stale, f"{stale} are listed but not public (any more): remove them"


def test_cases_are_well_formed():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "two cases share a name and variant"
    for case in CASES:
        assert case.kind in ("loss", "metric", "step"), case.id
        assert list(case.transforms) == list(cc.TRANSFORMS), case.id
        assert all(isinstance(s, cc.Status) for s in case.transforms.values()), case.id
        assert (case.hparam_values is None) == (not case.hparam_argnums), case.id
        if case.hparam_argnums:
            assert len(case.hparam_values()) == len(case.hparam_argnums), case.id
        no_hparams = isinstance(case.transforms["vmap_hparams"], cc.NotApplicable)
        assert no_hparams == (not case.hparam_argnums), (
            f"{case.id}: vmap (hyperparameters) is checked iff there are hyperparameter arguments"
        )
        no_grad = isinstance(case.transforms["grad"], cc.NotApplicable)
        assert no_grad == (not case.grad_argnums), f"{case.id}: grad needs grad_argnums"
        if no_grad:  # the transforms built on grad cannot apply either
            for t in ("vmap_grad", "compile_vmap_grad"):
                assert isinstance(case.transforms[t], cc.NotApplicable), (case.id, t)


def test_docs_table_has_a_row_per_case():
    table = [row for row in cc.markdown_table().splitlines() if row.startswith("|")]
    assert len(table) == 2 + len(CASES)
    assert all(row.count(" | ") == len(cc.TRANSFORMS) + 1 for row in table[2:])
    page = Path(__file__).resolve().parents[1] / "docs" / "composability.md"
    assert "<!-- composability-matrix -->" in page.read_text()


# --- beyond the matrix -----------------------------------------------------------------------


def _qc(seed: int = 0):
    q, c, *_ = cc._retrieval_inputs(seed)
    return q[:12], c[:15]


def test_higher_order_under_torch_func_is_exact():
    """``grad`` of the gradient's norm: the fused default switches to the plain formulation."""

    def grad_norm(fused):
        def f(q, c):
            gq, gc = torch.func.grad(lambda a, b: retrieval_loss(a, b, fused=fused), (0, 1))(q, c)
            return (gq * gq).sum() + (gc * gc).sum()

        return f

    q, c = _qc()
    fused = torch.func.grad(grad_norm(True), (0, 1))(q, c)
    plain = torch.func.grad(grad_norm(False), (0, 1))(q, c)
    qr, cr = q.clone().requires_grad_(), c.clone().requires_grad_()
    gq, gc = torch.autograd.grad(cc.ref_row_losses(qr, cr).sum(), (qr, cr), create_graph=True)
    want = torch.autograd.grad((gq * gq).sum() + (gc * gc).sum(), (qr, cr))
    for got in (fused, plain):
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-8, atol=1e-10)
    assert all(bool(w.abs().max() > 0) for w in want)


def test_plain_autograd_create_graph_on_the_fused_loss_names_fused_false():
    q, c = (x.clone().requires_grad_() for x in _qc())
    with pytest.raises(RuntimeError, match="fused=False"):
        torch.autograd.grad(retrieval_loss(q, c), (q, c), create_graph=True)
    # First order under plain autograd stays exact.
    gq, gc = torch.autograd.grad(retrieval_loss(q, c), (q, c))
    wq, wc = torch.autograd.grad(cc.ref_row_losses(q, c).sum(), (q, c))
    assert torch.allclose(gq, wq, rtol=1e-8, atol=1e-10)
    assert torch.allclose(gc, wc, rtol=1e-8, atol=1e-10)


def test_train_step_vmaps_over_stacked_states():
    """A sweep: ``stack_states`` of ``init_state`` for three learning rates, one vmapped step."""
    params, _, _, batch = cc._step_inputs(0)
    loss = cc._step_loss
    step = train.make_train_step(loss, optim.adagrad(0.1), compile=False)
    sweep_step = train.make_sweep_step(loss, optim.adagrad(0.1), compile=False)
    rates = (0.05, 0.1, 0.2)
    states = [
        train.init_state(params, optim.adagrad(lr), hparams={"temperature": 0.5}) for lr in rates
    ]
    new, logs, applied = sweep_step(train.stack_states(states), torch.ones(3, dtype=bool), batch)
    assert applied.tolist() == [True, True, True]
    for k, state in enumerate(states):
        alone, alone_logs = step(state, batch)
        assert tree.allclose(_lane(new, k), alone, rtol=1e-12, atol=0)
        assert torch.allclose(logs["loss"][k], alone_logs["loss"], rtol=1e-12)
        # And the lane is the hand-written Adagrad step at that (float32-stored) rate.
        rate = state.opt_state.hparams["learning_rate"]
        ref, _ = cc._train_step_reference(params, rate, state.hparams["temperature"], batch)
        assert tree.allclose(_lane(new, k).params, ref.params, rtol=1e-12, atol=1e-14)


@pytest.mark.compile
def test_sweep_step_own_compile_matches_the_reference(fresh_dynamo):
    """``make_sweep_step(compile={"fullgraph": True})``: what ``train.sweep`` runs."""
    params, lrs, temperatures, batch = cc._stacked_step_inputs(0)
    sweep_step = train.make_sweep_step(cc._step_loss, cc._OPT, compile={"fullgraph": True})
    states = train.stack_states(
        [cc._state({k: v[i] for k, v in params.items()}, lrs[i], temperatures[i]) for i in range(2)]
    )
    got = sweep_step(states, torch.ones(2, dtype=torch.bool), batch)
    want = cc._sweep_step_reference(params, lrs, temperatures, batch)
    case = next(c for c in CASES if c.name == "train.make_sweep_step")
    _assert_close(got, want, case, "with compile={'fullgraph': True}")
