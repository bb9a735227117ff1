"""train.sweep against N separate runs of the same step, and its handling of bad input."""

from __future__ import annotations

import io
import math

import pyarrow as pa
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import layers, optim, random, train, tree
from torchrs_fn.data import Loader
from torchrs_fn.tasks import Retrieval
from torchrs_fn.train.sweeps import STATE_COPIES


class DefaultRetrieval(rs.Model):
    """The basic retrieval model as a user writes it: no hyperparameters, the default task."""

    def __init__(self) -> None:
        super().__init__()
        self.user = layers.Embedding(30, 6)
        self.item = layers.Embedding(40, 6)
        self.task = Retrieval()

    def compute_loss(self, batch, training=False):
        return self.task(self.user(batch["u"]), self.item(batch["i"]))


class TinyRetrieval(DefaultRetrieval):
    """The same towers with dropout on the queries, a swept temperature and an L2 penalty."""

    def compute_loss(self, batch, training=False, hparams=None):
        u = self.user(batch["u"])
        u = random.dropout(hparams["key"], u, hparams["dropout"])
        loss = self.task(u, self.item(batch["i"]), temperature=hparams["temperature"])
        return loss + hparams["l2"] * (self.user.weight**2).sum()


HPARAMS = {"temperature": 1.0, "l2": 1e-3, "dropout": 0.0}


def _batches(n=3, b=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"u": torch.randint(0, 30, (b,), generator=g), "i": torch.randint(0, 40, (b,), generator=g)}
        for _ in range(n)
    ]


def _params(model):
    return lambda seed: rs.init(model, seed, dtype=torch.float64)


def _separate_run(model, optimizer, config, batches, epochs):
    """What a user would do without sweep: one state, the plain step, the same hyperparameters."""
    seed = config.get("seed", 0)
    loss_hp = {k: v for k, v in config.items() if k in HPARAMS}
    opt_hp = {k: v for k, v in config.items() if k != "seed" and k not in HPARAMS}
    state = train.init_state(
        rs.init(model, seed, dtype=torch.float64),
        optimizer,
        hparams={**HPARAMS, **loss_hp},
        seed=seed,
    )
    state = state._replace(opt_state=optim.set_hparams(state.opt_state, opt_hp))
    step = train.make_train_step(model, optimizer, compile=False)
    losses = []
    for _ in range(epochs):
        for b in batches:
            state, logs = step(state, b)
            losses.append(float(logs["loss"]))
    return state, losses


def _max_diff(a, b):
    return max(
        float((x.double() - y.double()).abs().max())
        for x, y in zip(tree.leaves(a), tree.leaves(b))
        if x.is_floating_point()
    )


@pytest.mark.parametrize(
    "optimizer, configs",
    [
        (
            optim.adamw(0.01, weight_decay=0.01),
            [
                {"learning_rate": 0.01, "temperature": 0.5, "seed": 0},
                {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99, "weight_decay": 0.1, "seed": 1},
                {"learning_rate": 0.02, "l2": 0.01, "dropout": 0.3, "seed": 2},
                {"learning_rate": 0.02, "dropout": 0.3, "seed": 3, "temperature": 2.0},
            ],
        ),
        (
            optim.sgd(0.1, momentum=0.9),
            [{"learning_rate": 0.1, "momentum": 0.0}, {"learning_rate": 0.3, "momentum": 0.5}],
        ),
    ],
)
def test_sweep_equals_separate_runs_float64(optimizer, configs):
    model = TinyRetrieval()
    batches = _batches()
    result = train.sweep(
        model,
        optimizer,
        params=_params(model),
        configs=configs,
        loader=batches,
        epochs=2,
        hparams=HPARAMS,
        compile=False,
        verbose=False,
    )
    for i, config in enumerate(configs):
        state, losses = _separate_run(model, optimizer, config, batches, epochs=2)
        assert _max_diff(result.state(i), state) < 1e-5
        for epoch in range(2):
            expected = sum(losses[epoch * 3 : epoch * 3 + 3]) / 3  # equal batch sizes
            assert result.history[i][epoch]["loss"] == pytest.approx(expected, rel=1e-9)


def test_configurations_really_differ_and_streams_are_per_seed():
    """Same seed -> same dropout masks and init; another seed -> other masks (not one shared stream)."""
    model = TinyRetrieval()
    configs = [
        {"seed": 5, "dropout": 0.5},
        {"seed": 5, "dropout": 0.5},
        {"seed": 6, "dropout": 0.5},
    ]
    result = train.sweep(
        model,
        optim.sgd(0.1),
        params=_params(model),
        configs=configs,
        loader=_batches(),
        hparams=HPARAMS,
        compile=False,
        verbose=False,
    )
    assert _max_diff(result.state(0), result.state(1)) == 0.0
    assert _max_diff(result.state(0), result.state(2)) > 1e-3


def test_nan_configuration_is_frozen_and_reported_others_go_on():
    model = TinyRetrieval()
    batches = _batches(n=4)
    configs = [{"learning_rate": 0.1}, {"learning_rate": 0.1, "temperature": 0.0}]  # 0 -> inf/NaN
    out = io.StringIO()
    result = train.sweep(
        model,
        optim.sgd(0.1),
        params=_params(model),
        configs=configs,
        loader=batches,
        epochs=2,
        hparams=HPARAMS,
        compile=False,
        stream=out,
    )
    assert [f["index"] for f in result.failed] == [1]
    failure = result.failed[0]
    assert failure["config"] == configs[1] and failure["epoch"] == 1 and failure["step"] == 0
    assert not math.isfinite(failure["loss"])
    # Frozen at its last finite state: the initial one here, since step 0 already failed.
    initial = train.init_state(rs.init(model, 0, dtype=torch.float64), optim.sgd(0.1))
    assert _max_diff(result.state(1).params, initial.params) == 0.0
    assert int(result.state(1).step) == 0
    # The healthy configuration trained on, exactly as on its own.
    state, _ = _separate_run(model, optim.sgd(0.1), configs[0], batches, epochs=2)
    assert _max_diff(result.state(0), state) < 1e-12
    assert result.best("loss", "min") == 0
    assert len(result.history[1]) == 1 and result.history[1][0]["status"] == "failed"
    assert "running 1/2" in out.getvalue()


def test_early_stopping_freezes_one_configuration():
    model = TinyRetrieval()
    batches = _batches()
    configs = [{"learning_rate": 0.05}, {"learning_rate": 0.2}]
    result = train.sweep(
        model,
        optim.sgd(0.1),
        params=_params(model),
        configs=configs,
        loader=batches,
        epochs=3,
        hparams=HPARAMS,
        stop_fn=lambda i, history: i == 1 and len(history) == 1,
        compile=False,
        verbose=False,
    )
    assert len(result.history[0]) == 3 and len(result.history[1]) == 1
    assert 1 in result.stopped and 0 not in result.stopped
    one_epoch, _ = _separate_run(model, optim.sgd(0.1), configs[1], batches, epochs=1)
    assert _max_diff(result.state(1), one_epoch) < 1e-12
    three, _ = _separate_run(model, optim.sgd(0.1), configs[0], batches, epochs=3)
    assert _max_diff(result.state(0), three) < 1e-12


def test_patience_and_selection():
    model = TinyRetrieval()
    configs = [{"learning_rate": lr} for lr in (0.0, 0.1, 0.3)]
    result = train.sweep(
        model,
        optim.sgd(0.1),
        params=_params(model),
        configs=configs,
        loader=_batches(),
        epochs=3,
        hparams=HPARAMS,
        eval_fn=lambda s: {
            "neg_loss": -float(
                rs.apply(
                    model, s.params, _batches()[0], hparams={**s.hparams, "key": random.key(0)}
                )
            )
        },
        select="neg_loss",
        patience=1,
        compile=False,
        verbose=False,
    )
    # learning rate 0 never improves after its first epoch: stopped after epoch 2.
    assert len(result.history[0]) == 2 and 0 in result.stopped
    finals = result.final("neg_loss")
    assert result.best_index == max(range(3), key=lambda i: finals[i])
    assert result.best_config == configs[result.best_index]
    assert result.best("neg_loss", "min") == min(range(3), key=lambda i: finals[i])


def test_memory_budget_chunks_give_the_same_result():
    model = TinyRetrieval()
    batches = _batches()
    configs = [{"learning_rate": 0.05 * (i + 1), "seed": i} for i in range(5)]
    kwargs = dict(
        params=_params(model),
        configs=configs,
        loader=batches,
        hparams=HPARAMS,
        compile=False,
        verbose=False,
    )
    whole = train.sweep(model, optim.adagrad(0.1), **kwargs)
    one = train.init_state(rs.init(model, 0, dtype=torch.float64), optim.adagrad(0.1))
    per_config = STATE_COPIES * (tree.nbytes(one) + 3 * 4 + 8)
    chunked = train.sweep(model, optim.adagrad(0.1), memory_budget=2 * per_config, **kwargs)
    for i in range(5):
        assert _max_diff(whole.state(i), chunked.state(i)) == 0.0
    with pytest.raises(ValueError, match="memory_budget=10 bytes is less than one configuration"):
        train.sweep(model, optim.adagrad(0.1), memory_budget=10, **kwargs)


def test_chunks_see_the_same_shuffled_batches_as_one_run():
    """A shuffling Loader is set back to the sweep's epochs for every chunk."""
    g = torch.Generator().manual_seed(1)
    table = pa.table(
        {
            "u": torch.randint(0, 30, (40,), generator=g).numpy(),
            "i": torch.randint(0, 40, (40,), generator=g).numpy(),
        }
    )
    model = TinyRetrieval()
    configs = [{"learning_rate": 0.05 * (k + 1), "seed": k} for k in range(4)]
    one = train.init_state(rs.init(model, 0, dtype=torch.float64), optim.adagrad(0.1))
    budget = 2 * STATE_COPIES * (tree.nbytes(one) + 3 * 4 + 8)
    results = []
    for memory_budget in (None, budget):
        loader = Loader(table, 16, shuffle=True, seed=3)
        loader.set_epoch(5)
        results.append(
            train.sweep(
                model,
                optim.adagrad(0.1),
                params=_params(model),
                configs=configs,
                loader=loader,
                epochs=2,
                hparams=HPARAMS,
                memory_budget=memory_budget,
                compile=False,
                verbose=False,
            )
        )
        assert loader.epoch == 7  # where a separate two-epoch run would have left it
    for k in range(4):
        assert _max_diff(results[0].state(k), results[1].state(k)) == 0.0
    # And one of them equals a separate run over the same loader epochs.
    loader = Loader(table, 16, shuffle=True, seed=3)
    loader.set_epoch(5)
    state = train.init_state(
        rs.init(model, 2, dtype=torch.float64), optim.adagrad(0.1), hparams=HPARAMS, seed=2
    )
    state = state._replace(opt_state=optim.set_hparams(state.opt_state, {"learning_rate": 0.15}))
    step = train.make_train_step(model, optim.adagrad(0.1), compile=False)
    for _ in range(2):
        for batch in loader:
            state, _ = step(state, batch)
    assert _max_diff(results[1].state(2), state) < 1e-12


def test_bad_input_is_named():
    model = TinyRetrieval()
    common = dict(params=_params(model), loader=_batches(), hparams=HPARAMS, verbose=False)
    with pytest.raises(ValueError, match="configs is empty"):
        train.sweep(model, optim.sgd(0.1), configs=[], **common)
    with pytest.raises(KeyError, match="'momentum'.*neither"):
        train.sweep(model, optim.sgd(0.1), configs=[{"momentum": 0.9}], **common)
    with pytest.raises(KeyError, match="'lr'"):
        train.sweep(model, optim.adam(0.1), configs=[{"lr": 0.1}], **common)
    schedule = optim.exponential_decay(0.1, 10, 0.5)
    with pytest.raises(KeyError, match="learning_rate"):
        train.sweep(model, optim.sgd(schedule), configs=[{"learning_rate": 0.1}], **common)
    with pytest.raises(TypeError, match="seed"):
        train.sweep(model, optim.sgd(0.1), configs=[{"seed": 1.5}], **common)

    p = rs.init(model, 0, dtype=torch.float64)
    a = train.init_state(p, optim.sgd(0.1), hparams=HPARAMS, seed=0)
    b = train.init_state(p, optim.adam(0.1), hparams=HPARAMS, seed=0)
    with pytest.raises(ValueError, match="state 1 has a different structure"):
        train.stack_states([a, b])
    with pytest.raises(ValueError, match="N = 0"):
        train.stack_states([])
    small = train.init_state(
        rs.init(layers.Embedding(30, 6), 0, dtype=torch.float64), optim.sgd(0.1)
    )
    with pytest.raises(ValueError, match="different structure"):
        train.stack_states([a, small._replace(hparams=a.hparams, key=a.key)])

    step = train.make_sweep_step(model, optim.sgd(0.1), compile=False)
    stacked = train.stack_states([a, a])
    ragged = stacked._replace(step=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="leading size"):
        step(ragged, torch.ones(2, dtype=torch.bool), _batches()[0])
    with pytest.raises(ValueError, match="active must be a bool tensor of shape \\[2\\]"):
        step(stacked, torch.ones(3, dtype=torch.bool), _batches()[0])
    with pytest.raises(ValueError, match="0-d"):
        step(a, torch.ones(1, dtype=torch.bool), _batches()[0])


def test_state_hparams_need_a_loss_that_takes_them():
    params = {"w": torch.ones(3, dtype=torch.float64)}
    state = train.init_state(params, optim.sgd(0.1), hparams={"l2": 0.1})
    step = train.make_train_step(lambda p, b: (p["w"] * b).sum(), optim.sgd(0.1), compile=False)
    with pytest.raises(TypeError, match="does not take them"):
        step(state, torch.ones(3, dtype=torch.float64))
    # A loss that takes them gets them, with the step's key when the state has a seed.
    seen = {}

    def loss(p, b, hparams):
        seen.update(hparams)
        return (p["w"] * b).sum() + hparams["l2"] * (p["w"] ** 2).sum()

    state = train.init_state(params, optim.sgd(0.1), hparams={"l2": 0.1}, seed=3)
    new, _ = train.make_train_step(loss, optim.sgd(0.1), compile=False)(state, torch.ones(3))
    assert sorted(seen) == ["key", "l2"]
    assert int(seen["key"]) == int(random.fold_in(random.key(3), 0))
    # d/dw (w + 0.1 w^2) = 1 + 0.2 w = 1.2 at w = 1, so w <- 1 - 0.1 * 1.2.
    assert torch.allclose(new.params["w"], torch.full((3,), 1 - 0.12, dtype=torch.float64))


@pytest.mark.compile
def test_compiled_sweep_step_matches_eager():
    model = TinyRetrieval()
    batches = _batches()
    configs = [
        {"learning_rate": 0.05, "seed": 0, "dropout": 0.2},
        {"learning_rate": 0.1, "seed": 1},
    ]
    kwargs = dict(
        params=_params(model),
        configs=configs,
        loader=batches,
        hparams=HPARAMS,
        verbose=False,
    )
    eager = train.sweep(model, optim.adagrad(0.1), compile=False, **kwargs)
    compiled = train.sweep(model, optim.adagrad(0.1), compile={"fullgraph": True}, **kwargs)
    for i in range(2):
        assert _max_diff(eager.state(i), compiled.state(i)) < 1e-10


def _plain_vmap_of_step(compile_: bool) -> None:
    """``torch.vmap(step, in_dims=(0, None))`` over ``tree.stack`` of ``init_state``s, by hand."""
    model = DefaultRetrieval()
    for optimizer in (optim.sgd(0.1), optim.adam(0.01)):
        states = [
            train.init_state(rs.init(model, s, dtype=torch.float64), optimizer) for s in range(3)
        ]
        step = train.make_train_step(model, optimizer, compile=False)
        vstep = torch.vmap(step, in_dims=(0, None))
        if compile_:
            vstep = torch.compile(vstep, fullgraph=True, dynamic=False)
        stacked = tree.stack(states)
        for batch in _batches():
            stacked, logs = vstep(stacked, batch)
            states = [step(s, batch)[0] for s in states]
        assert logs["loss"].shape == (3,)
        for i in range(3):
            assert _max_diff(tree.map(lambda x, i=i: x[i], stacked), states[i]) < 1e-10


def test_plain_vmap_of_the_step_over_stacked_states():
    _plain_vmap_of_step(compile_=False)


@pytest.mark.compile
def test_compiled_plain_vmap_of_the_step_over_stacked_states():
    _plain_vmap_of_step(compile_=True)


class SampledNegatives(DefaultRetrieval):
    """In-batch negatives plus uniformly sampled ones, drawn from the step's random key."""

    def compute_loss(self, batch, training=False, hparams=None):
        negatives = random.randint(hparams["key"], (8,), 0, 40)
        items = torch.cat([batch["i"], negatives])
        return self.task(self.user(batch["u"]), self.item(items), candidate_ids=items)


def test_sampled_negatives_follow_each_configuration_seed():
    model = SampledNegatives()
    batches = _batches()
    configs = [{"seed": 0}, {"seed": 1}, {"seed": 0, "learning_rate": 0.2}]
    result = train.sweep(
        model,
        optim.sgd(0.1),
        params=lambda seed: rs.init(
            model, 0, dtype=torch.float64
        ),  # same init: only the draws differ
        configs=configs,
        loader=batches,
        epochs=2,
        compile=False,
        verbose=False,
    )
    step = train.make_train_step(model, optim.sgd(0.1), compile=False)
    for i, config in enumerate(configs):
        state = train.init_state(
            rs.init(model, 0, dtype=torch.float64), optim.sgd(0.1), seed=config["seed"]
        )
        state = state._replace(
            opt_state=optim.set_hparams(
                state.opt_state, {"learning_rate": config.get("learning_rate", 0.1)}
            )
        )
        for _ in range(2):
            for b in batches:
                state, _ = step(state, b)
        assert _max_diff(result.state(i), state) < 1e-12
    # Different seeds drew different negatives, so the runs differ.
    assert _max_diff(result.state(0), result.state(1)) > 1e-6


# --- row-sparse tables in a sweep ---------------------------------------------------------------


class TemperatureRetrieval(DefaultRetrieval):
    """Reads its tables only at the batch's ids (what row-sparse updates need)."""

    def compute_loss(self, batch, training=False, hparams=None):
        u, i = self.user(batch["u"]), self.item(batch["i"])
        return self.task(u, i, temperature=hparams["temperature"])


SPARSE_TABLES = {"user.weight": "u", "item.weight": "i"}


@pytest.mark.parametrize("compile_", [False, True])
def test_sweep_with_sparse_tables_equals_the_dense_sweep_and_freezes(compile_):
    # Adagrad: the row-sparse update equals the dense one. The third configuration's loss is
    # not finite at its first step (temperature 0): its rows, written in place, must stay.
    model = TemperatureRetrieval()
    configs = [
        {"learning_rate": 0.1},
        {"learning_rate": 0.3, "temperature": 0.5, "seed": 1},
        {"learning_rate": 0.1, "temperature": 0.0},
    ]
    kwargs = dict(
        params=_params(model),
        configs=configs,
        loader=_batches(n=4),
        epochs=2,
        hparams={"temperature": 1.0},
        verbose=False,
        compile=compile_,
    )
    dense = train.sweep(model, optim.adagrad(0.1), **kwargs)
    sparse = train.sweep(model, optim.adagrad(0.1), sparse_tables=SPARSE_TABLES, **kwargs)
    assert [f["index"] for f in sparse.failed] == [f["index"] for f in dense.failed] == [2]
    for i in range(3):
        assert _max_diff(dense.state(i), sparse.state(i)) < 1e-12
    initial = train.init_state(rs.init(model, 0, dtype=torch.float64), optim.adagrad(0.1))
    assert _max_diff(sparse.state(2).params, initial.params) == 0.0


def test_sweep_with_sparse_tables_checks_the_loss_first():
    # TinyRetrieval's L2 penalty reads the whole user table: with row views it would read only
    # the batch's rows, which the first call's check reports (a sweep's calls run under vmap).
    model = TinyRetrieval()
    with pytest.raises(ValueError, match="batch columns named for it"):
        train.sweep(
            model,
            optim.sgd(0.1),
            params=_params(model),
            configs=[{"learning_rate": 0.1}],
            loader=_batches(),
            hparams=HPARAMS,
            compile=False,
            verbose=False,
            sparse_tables=SPARSE_TABLES,
        )
