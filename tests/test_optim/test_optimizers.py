"""Each functional optimizer follows torch.optim (or the Keras formula) to 1e-6 over 100 steps."""

import math

import pytest
import torch

from torchrs_fn import optim, tree

STEPS = 100


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randn(32, 3, generator=g, dtype=torch.float64)
    params = {
        "emb": {"weight": torch.randn(5, 3, generator=g, dtype=torch.float64)},
        "dense": {"bias": torch.randn(3, generator=g, dtype=torch.float64)},
    }

    def loss(p, step):
        # A different mini-batch view each step so the gradients vary.
        xs = torch.roll(x, shifts=step, dims=0)[:16]
        ys = torch.roll(y, shifts=step, dims=0)[:16]
        pred = torch.tanh(xs @ p["emb"]["weight"] + p["dense"]["bias"])
        return ((pred - ys) ** 2).mean()

    return params, loss


def _run_ours(opt, params, loss):
    state = opt.init(params)
    history = []
    for step in range(STEPS):
        grads = torch.func.grad(loss)(params, step)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        history.append(params)
    return history


def _run_torch(make_opt, params, loss, clip=None, schedule=None):
    leaves = {k: torch.nn.Parameter(v.clone()) for k, v in tree.flatten_dict(params).items()}
    opt = make_opt(leaves)
    sched = schedule(opt) if schedule else None
    history = []
    for step in range(STEPS):
        opt.zero_grad()
        loss(tree.unflatten_dict(leaves), step).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(leaves.values()), clip)
        opt.step()
        if sched:
            sched.step()
        history.append({k: v.detach().clone() for k, v in leaves.items()})
    return history


def _assert_same(ours, theirs, atol=1e-6):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for name, value in tree.flatten_dict(a).items():
            diff = (value - b[name]).abs().max().item()
            assert diff < atol, f"step {step}, {name}: differs by {diff}"


CASES = {
    "sgd": (optim.sgd(0.1), lambda p: torch.optim.SGD(p.values(), lr=0.1)),
    "sgd_momentum": (
        optim.sgd(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p.values(), lr=0.05, momentum=0.9),
    ),
    "sgd_nesterov": (
        optim.sgd(0.05, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p.values(), lr=0.05, momentum=0.9, nesterov=True),
    ),
    "adagrad_keras_defaults": (
        optim.adagrad(0.1),
        lambda p: torch.optim.Adagrad(p.values(), lr=0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
    "adam": (optim.adam(0.01), lambda p: torch.optim.Adam(p.values(), lr=0.01)),
    "adam_betas": (
        optim.adam(0.02, b1=0.8, b2=0.99, eps=1e-7),
        lambda p: torch.optim.Adam(p.values(), lr=0.02, betas=(0.8, 0.99), eps=1e-7),
    ),
    "adamw": (
        optim.adamw(0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p.values(), lr=0.01, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_optim(name):
    ours, make_torch = CASES[name]
    params, loss = _problem()
    _assert_same(_run_ours(ours, params, loss), _run_torch(make_torch, params, loss))


def test_adagrad_matches_keras_formula_by_hand():
    # Keras: acc = 0.1 + sum g^2; w -= lr * g / (sqrt(acc) + 1e-7), written out independently.
    params, loss = _problem(1)
    ours = _run_ours(optim.adagrad(0.3), params, loss)
    w = {k: v.clone() for k, v in tree.flatten_dict(params).items()}
    acc = {k: torch.full_like(v, 0.1) for k, v in w.items()}
    for step in range(STEPS):
        g = tree.flatten_dict(torch.func.grad(loss)(tree.unflatten_dict(w), step))
        for k in w:
            acc[k] = acc[k] + g[k] ** 2
            w[k] = w[k] - 0.3 * g[k] / (acc[k].sqrt() + 1e-7)
    _assert_same(ours[-1:], [w])


def test_chain_clip_by_global_norm_matches_clip_grad_norm():
    params, loss = _problem(2)
    ours = _run_ours(optim.chain(optim.clip_by_global_norm(0.05), optim.sgd(0.5)), params, loss)
    theirs = _run_torch(lambda p: torch.optim.SGD(p.values(), lr=0.5), params, loss, clip=0.05)
    # torch divides by (norm + 1e-6); optax and we divide by norm: a 1e-6 relative difference.
    _assert_same(ours, theirs, atol=1e-5)


def test_partition_is_composite_optimizer():
    params, loss = _problem(3)
    labels = optim.label_by_path(lambda path: "embeddings" if path.startswith("emb") else "rest")
    opt = optim.partition({"embeddings": optim.adagrad(0.1), "rest": optim.adam(0.01)}, labels)

    def make(p):
        return _Composite(
            torch.optim.Adagrad([p["emb.weight"]], lr=0.1, initial_accumulator_value=0.1, eps=1e-7),
            torch.optim.Adam([p["dense.bias"]], lr=0.01),
        )

    _assert_same(_run_ours(opt, params, loss), _run_torch(make, params, loss))


class _Composite:
    def __init__(self, *opts):
        self.opts = opts

    def zero_grad(self):
        for o in self.opts:
            o.zero_grad()

    def step(self):
        for o in self.opts:
            o.step()


def test_partition_rejects_unknown_labels():
    params, _ = _problem()
    opt = optim.partition({"a": optim.sgd(0.1)}, {"emb": {"weight": "a"}, "dense": {"bias": "b"}})
    with pytest.raises(KeyError, match=r"dense.bias.*'b'"):
        opt.init(params)


def test_exponential_decay_schedule_matches_exponential_lr():
    params, loss = _problem(4)
    ours = _run_ours(optim.sgd(optim.exponential_decay(0.2, 1, 0.97)), params, loss)
    theirs = _run_torch(
        lambda p: torch.optim.SGD(p.values(), lr=0.2),
        params,
        loss,
        schedule=lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.97),
    )
    _assert_same(ours, theirs)


def test_schedules_by_formula():
    c = torch.arange(0, 30)
    cos = optim.cosine_decay_schedule(1.0, 20, alpha=0.1)(c)
    ref = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, 20) / 20)) for i in range(30)]
    assert torch.allclose(cos, torch.tensor(ref), atol=1e-6)
    warm = optim.warmup_cosine_decay_schedule(0.0, 1.0, 5, 25)(c)
    assert torch.allclose(warm[:6], torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), atol=1e-6)
    assert abs(warm[25].item()) < 1e-6
    lin = optim.linear_schedule(1.0, 0.0, 10)(c)
    assert torch.allclose(lin[:11], torch.linspace(1.0, 0.0, 11), atol=1e-6)
    pw = optim.piecewise_constant_schedule([5, 10], [1.0, 0.5, 0.1])(c)
    assert pw[5].item() == 1.0 and pw[6].item() == 0.5 and pw[11].item() == pytest.approx(0.1)


def test_hyperparameters_live_in_state_and_vmap_over_a_sweep():
    params, loss = _problem(5)
    opt = optim.adam(0.01)
    lrs = [0.001, 0.01, 0.1]
    states = []
    for lr in lrs:
        s = opt.init(params)
        s.hparams["learning_rate"] = torch.tensor(lr)
        states.append(s)
    stacked_state = tree.stack(states)
    stacked_params = tree.stack([params] * len(lrs))

    def one_step(p, s):
        g = torch.func.grad(loss)(p, 0)
        u, s = opt.update(g, s, p)
        return optim.apply_updates(p, u), s

    new_params, _ = torch.vmap(one_step)(stacked_params, stacked_state)
    for i, lr in enumerate(lrs):
        expected = _run_torch(lambda p, lr=lr: torch.optim.Adam(p.values(), lr=lr), params, loss)[0]
        got = tree.unstack(new_params)[i]
        _assert_same([got], [expected])


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="learning_rate"):
        optim.adagrad(-0.1)
    with pytest.raises(ValueError, match="b1"):
        optim.adam(0.1, b1=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(TypeError, match="argument 1"):
        optim.chain(optim.sgd(0.1), "adam")
