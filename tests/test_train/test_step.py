"""Train/eval steps and loops: compiled == eager, loss goes down, evaluate averages correctly."""

import pytest
import torch
from torch import nn

import torchrs_fn as rs
from torchrs_fn import metrics, optim, train, tree
from torchrs_fn.tasks import Retrieval


class TwoTower(rs.Model):
    def __init__(self, users: int = 30, items: int = 40, dim: int = 8) -> None:
        super().__init__()
        self.user_model = nn.Embedding(users, dim)
        self.movie_model = nn.Embedding(items, dim)
        self.task = Retrieval()

    def compute_loss(self, batch, training=False):
        return self.task(self.user_model(batch["user_id"]), self.movie_model(batch["movie_title"]))


def _batches(n: int, size: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, 30, (n, size), generator=g)
    # Items depend on users so there is something to learn.
    items = (users * 7 + torch.randint(0, 2, (n, size), generator=g)) % 40
    return [{"user_id": u, "movie_title": i} for u, i in zip(users, items)]


def _reference_step(model, params, batch, lr):
    """One Adagrad step by plain autograd on a stateful module (independent of make_train_step)."""
    ref = TwoTower()
    ref.load_state_dict(tree.flatten_dict(params))
    torch_opt = torch.optim.Adagrad(
        ref.parameters(), lr=lr, initial_accumulator_value=0.1, eps=1e-7
    )
    loss = ref.compute_loss(batch)
    loss.backward()
    torch_opt.step()
    return loss.detach(), {n: p.detach() for n, p in ref.named_parameters()}


def test_eager_step_matches_autograd_and_torch_optim():
    model = TwoTower()
    params = rs.init(model, seed=0)
    batch = _batches(1)[0]
    ref_loss, ref_params = _reference_step(model, params, batch, 0.1)
    step = train.make_train_step(model, optim.adagrad(0.1), compile=False)
    state, logs = step(train.init_state(params, optim.adagrad(0.1)), batch)
    assert torch.allclose(logs["loss"], ref_loss, rtol=1e-6)
    for name, value in tree.flatten_dict(state.params).items():
        assert torch.allclose(value, ref_params[name], atol=1e-6), name
    assert int(state.step) == 1


@pytest.mark.compile
def test_compiled_fullgraph_step_agrees_with_eager():
    model = TwoTower()
    params = rs.init(model, seed=1)
    opt = optim.adagrad(0.1)
    eager = train.make_train_step(model, opt, compile=False)
    compiled = train.make_train_step(model, opt, compile={"fullgraph": True})
    s_e = s_c = train.init_state(params, opt)
    for batch in _batches(4, seed=2):
        s_e, l_e = eager(s_e, batch)
        s_c, l_c = compiled(s_c, batch)
        assert torch.allclose(l_e["loss"], l_c["loss"], rtol=1e-5)
    assert tree.allclose(s_e.params, s_c.params, atol=1e-5)
    assert tree.allclose(s_e.opt_state.sum_of_squares, s_c.opt_state.sum_of_squares, rtol=1e-5)


def test_fit_lowers_the_loss_and_logs_epochs():
    model = TwoTower()
    opt = optim.adagrad(0.5)
    state = train.init_state(rs.init(model, seed=0), opt)
    step = train.make_train_step(model, opt, compile=False)
    state, history = train.fit(step, state, _batches(8), epochs=3, verbose=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(h["steps"] == 8 and h["epoch_seconds"] > 0 for h in history)
    assert int(state.step) == 24


def test_loss_fn_with_aux_logs_and_scalar_check():
    def loss_fn(params, batch):
        loss = ((params["w"] * batch["x"]) ** 2).sum()
        return loss, {"w_norm": params["w"].norm()}

    opt = optim.sgd(0.1)
    step = train.make_train_step(loss_fn, opt, compile=False)
    state = train.init_state({"w": torch.tensor([1.0, -2.0])}, opt)
    state, logs = step(state, {"x": torch.tensor([1.0, 1.0])})
    assert logs["loss"].item() == pytest.approx(5.0)
    assert logs["w_norm"].item() == pytest.approx(5**0.5)
    assert torch.allclose(state.params["w"], torch.tensor([0.8, -1.6]))  # w - 0.1 * 2w

    bad = train.make_train_step(lambda p, b: p["w"] * 2, opt, compile=False)
    with pytest.raises(ValueError, match="scalar"):
        bad(state, {"x": torch.ones(2)})


def test_evaluate_averages_like_a_manual_loop():
    model = TwoTower()
    params = rs.init(model, seed=0)
    batches = _batches(3, size=50) + _batches(1, size=20, seed=9)
    cands = params["movie_model"]["weight"]

    def eval_fn(p, batch, candidates):
        q = rs.apply(model.user_model, p["user_model"], batch["user_id"])
        out = metrics.factorized_top_k(q, candidates, batch["movie_title"], ks=(1, 10))
        out["loss"] = rs.apply(model, p, batch)
        return out

    result = train.evaluate(train.make_eval_step(eval_fn, compile=False), params, batches, cands)
    hits10 = torch.cat([eval_fn(params, b, cands)["top_10"] for b in batches])
    assert result["top_10"] == pytest.approx(hits10.mean().item())
    losses = [(eval_fn(params, b, cands)["loss"].item(), len(b["user_id"])) for b in batches]
    assert result["loss"] == pytest.approx(
        sum(v * n for v, n in losses) / sum(n for _, n in losses)
    )


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="GradientTransformation"):
        train.init_state({"w": torch.zeros(1)}, torch.optim.SGD)
    with pytest.raises(ValueError, match="epochs"):
        train.fit(lambda s, b: (s, {}), None, [], epochs=0)
    with pytest.raises(ValueError, match="no batch"):
        train.fit(lambda s, b: (s, {}), None, [], epochs=1, verbose=False)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_bf16_precision_keeps_float32_master_weights_and_tracks_fp32(device):
    # A dense regression: bfloat16 autocast (on the parameters' device) runs the matmuls in
    # bf16, parameters and optimizer state stay float32, and training follows the float32 run
    # to bf16's precision.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g).to(device)
    y = x @ torch.randn(16, generator=g).to(device)
    params = {"w": torch.zeros(16, device=device)}

    def loss_fn(p, b):
        pred = b["x"] @ p["w"]
        return ((pred.float() - b["y"]) ** 2).mean()

    opt = optim.adam(0.05)
    states = {}
    for precision in ("fp32", "bf16"):
        step = train.make_train_step(loss_fn, opt, compile=False, precision=precision)
        state = train.init_state(params, opt)
        for _ in range(100):
            state, logs = step(state, {"x": x, "y": y})
        assert state.params["w"].dtype == torch.float32
        assert all(t.dtype != torch.bfloat16 for t in tree.leaves(state.opt_state))
        assert logs["loss"].dtype == torch.float32
        states[precision] = state
    # bf16 products carry ~3 significant digits: the fits agree to a few 1e-2.
    diff = (states["bf16"].params["w"] - states["fp32"].params["w"]).abs().max()
    assert diff < 5e-2, diff
    # And bf16 really ran: the weights are not bit-identical to the float32 run.
    assert not torch.equal(states["bf16"].params["w"], states["fp32"].params["w"])
    with pytest.raises(ValueError, match="precision must be one of"):
        train.make_train_step(loss_fn, opt, precision="fp16")


def test_eager_step_uses_plain_autograd_with_the_same_result_as_torch_func():
    # Outside transforms the eager step takes its gradient with torch.autograd (no Dynamo import,
    # less overhead); under vmap it uses torch.func. Both must give the same new state.
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(5, 3, generator=g), "unused": torch.randn(2, generator=g)}
    batch = {"x": torch.randn(8, 5, generator=g), "y": torch.randn(8, 3, generator=g)}

    def loss_fn(p, b):
        err = b["x"] @ p["w"] - b["y"]
        return (err**2).mean(), {"max_err": err.abs().max()}

    opt = optim.adam(0.1)
    step = train.make_train_step(loss_fn, opt, compile=False)
    state = train.init_state(params, opt)
    new, logs = step(state, batch)
    assert not logs["loss"].requires_grad and not logs["max_err"].requires_grad
    assert not any(x.requires_grad for x in tree.leaves(new))
    stacked = tree.stack([state])
    new_v, logs_v = torch.vmap(step, in_dims=(0, None))(stacked, batch)
    assert tree.allclose(tree.map(lambda x: x[0], new_v), new, rtol=1e-6, atol=1e-7)
    assert torch.allclose(logs_v["loss"][0], logs["loss"])
    # The unused parameter gets a zero gradient, hence Adam leaves it unchanged.
    assert torch.equal(new.params["unused"], params["unused"])
    # A state whose leaves require grad (an outer autograd derivative) keeps its graph.
    lr = torch.tensor(0.1, requires_grad=True)
    hyper = state._replace(opt_state=optim.set_hparams(state.opt_state, {"learning_rate": lr}))
    out, _ = step(hyper, batch)
    (d_lr,) = torch.autograd.grad(out.params["w"].sum(), lr)
    assert d_lr.abs() > 0


def test_compiling_on_a_torch_older_than_2_13_is_refused_or_runs_eagerly(monkeypatch):
    # Measured on torch 2.11 (a GPU machine's build): 40 compiled cases of the suite failed in
    # Dynamo and one compiled gradient was wrong, so steps refuse to compile there.
    from torchrs_fn.train import step as step_module

    assert step_module.compile_supported("2.13.0+cpu") and step_module.compile_supported("3.0")
    assert not step_module.compile_supported("2.11.0+cu130")
    assert step_module.compile_supported()  # the torch running this suite
    monkeypatch.setattr(step_module, "compile_supported", lambda version=None: False)
    loss = lambda p, b: (p["w"] * b["x"]).sum()  # noqa: E731
    with pytest.raises(RuntimeError, match=r"needs torch 2\.13 or newer.*compile=False"):
        train.make_train_step(loss, optim.sgd(0.1), compile=True)
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        step = train.make_train_step(loss, optim.sgd(0.1), compile="auto")
    state = train.init_state({"w": torch.ones(2)}, optim.sgd(0.1))
    new, _ = step(state, {"x": torch.tensor([1.0, 2.0])})
    torch.testing.assert_close(new.params["w"], torch.tensor([0.9, 0.8]))
    assert train.make_train_step(loss, optim.sgd(0.1), compile=False) is not None
