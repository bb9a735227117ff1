"""torchrs_fn.random: determinism, independence, distributions, vmap and gradients."""

import math

import pytest
import torch

from torchrs_fn import random


def test_same_key_same_draws_other_key_other_draws():
    a = random.uniform(random.key(3), (1000,))
    assert torch.equal(a, random.uniform(random.key(3), (1000,)))
    b = random.uniform(random.key(4), (1000,))
    assert not torch.equal(a, b)
    # Keys from consecutive steps and split keys are distinct, too.
    k = random.key(0)
    steps = {int(random.fold_in(k, s)) for s in range(1000)}
    assert len(steps) == 1000
    assert len({int(x) for x in random.split(k, 8)}) == 8


def test_uniform_is_uniform_and_streams_uncorrelated():
    n = 200_000
    u = random.uniform(random.key(7), (n,), dtype=torch.float64)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    counts = torch.histc(u, bins=20, min=0.0, max=1.0)
    expected = n / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 50.0  # 19 degrees of freedom: p < 1e-4 above ~45
    v = random.uniform(random.key(8), (n,), dtype=torch.float64)
    corr = float(torch.corrcoef(torch.stack([u, v]))[0, 1])
    assert abs(corr) < 4.0 / math.sqrt(n)
    lag = float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])
    assert abs(lag) < 4.0 / math.sqrt(n)


def test_randint_range_and_frequencies():
    x = random.randint(random.key(1), (100_000,), 3, 13)
    assert int(x.min()) == 3 and int(x.max()) == 12
    freq = torch.bincount(x - 3, minlength=10).double() / x.numel()
    assert torch.allclose(freq, torch.full((10,), 0.1, dtype=torch.float64), atol=0.005)
    with pytest.raises(ValueError, match="low < high"):
        random.randint(random.key(1), (3,), 5, 5)


def test_vmap_over_keys_equals_each_key_alone():
    keys = torch.stack([random.key(s) for s in range(4)])
    x = torch.ones(4, 50, dtype=torch.float64)
    rates = torch.tensor([0.0, 0.2, 0.5, 0.9], dtype=torch.float64)
    out = torch.vmap(random.dropout)(keys, x, rates)
    for i in range(4):
        assert torch.equal(out[i], random.dropout(keys[i], x[i], rates[i]))
    assert torch.equal(out[0], x[0])


def test_dropout_rate_scale_and_gradients():
    k = random.key(11)
    x = torch.randn(100_000, dtype=torch.float64)
    y = random.dropout(k, x, 0.3)
    kept = y != 0
    assert abs(float(kept.double().mean()) - 0.7) < 0.01
    assert torch.allclose(y[kept], x[kept] / 0.7)
    # Gradients w.r.t. x and the rate against autograd of the formula with the same mask.
    rate = torch.tensor(0.3, dtype=torch.float64)
    gx, gr = torch.func.grad(lambda a, r: random.dropout(k, a, r).sum(), argnums=(0, 1))(x, rate)
    mask = (random.uniform(k, x.shape, dtype=torch.float64) >= 0.3).double()
    assert torch.allclose(gx, mask / 0.7)
    assert float(gr) == pytest.approx(float((mask * x).sum() / 0.7**2), rel=1e-12)
    with pytest.raises(ValueError, match="rate"):
        random.dropout(k, x, 1.0)


def test_bad_keys_and_seeds_are_named():
    with pytest.raises(TypeError, match="int64"):
        random.uniform(torch.tensor(1.0), (3,))
    with pytest.raises(TypeError, match="seed must be an int"):
        random.key(1.5)
    with pytest.raises(TypeError, match="integer"):
        random.key(torch.tensor(1.0))


@pytest.mark.compile
def test_compiled_draws_equal_eager():
    def f(k, x):
        return random.dropout(k, x, 0.5) + random.uniform(random.fold_in(k, 3), x.shape)

    k, x = random.key(5), torch.randn(64)
    assert torch.equal(torch.compile(f, fullgraph=True)(k, x), f(k, x))
