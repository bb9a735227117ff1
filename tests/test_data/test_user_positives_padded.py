"""UserPositives.padded against a Python loop over each user's positives."""

import torch

from torchrs_fn.data.sampling import UserPositives


def _loop(users_items: list[tuple[int, int]], query: list[int]) -> list[list[int]]:
    sets: dict[int, set[int]] = {}
    for u, i in users_items:
        sets.setdefault(u, set()).add(i)
    rows = [sorted(sets.get(u, ())) for u in query]
    width = max((len(r) for r in rows), default=0)
    return [r + [-1] * (width - len(r)) for r in rows]


def test_padded_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 7, (60,), generator=g)
    items = torch.randint(0, 15, (60,), generator=g)
    positives = UserPositives(users, items, num_users=9)
    pairs = list(zip(users.tolist(), items.tolist()))
    # Repeats, users without positives (7, 8) and past the last user (12), any order.
    query = [3, 0, 3, 7, 8, 12, 6, 1, 2, 5, 4]
    got = positives.padded(torch.tensor(query))
    assert got.dtype == torch.int64
    assert got.tolist() == _loop(pairs, query)


def test_padded_edge_cases():
    positives = UserPositives([0, 0, 2], [5, 1, 1], num_users=4)
    assert positives.padded([1, 3]).shape == (2, 0)  # nobody has a positive
    assert positives.padded([]).shape == (0, 0)
    assert positives.padded([2, 0]).tolist() == [[1, -1], [1, 5]]
