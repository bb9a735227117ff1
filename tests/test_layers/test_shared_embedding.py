"""Sharing one table between features, HashedEmbedding, and the text tower end to end.

References: autograd of each use on its own (the shared gradient must be their sum), indexing the
table by hand, and a hand-computed mean of token embeddings.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch
from torch import nn

import torchrs_fn as rs
from torchrs_fn.data import Hashing, TextVectorization
from torchrs_fn.layers import BagEmbedding, Embedding, HashedEmbedding


class TwoFeaturesOneModule(nn.Module):
    """The current title and the previously watched titles share the title table."""

    def __init__(self):
        super().__init__()
        self.titles = Embedding(10, 4)

    def forward(self, title, previous):
        return (self.titles(title) * self.titles(previous).mean(1)).sum()


class TwoAttributesOneTable(nn.Module):
    """One table assigned to two attributes (the Keras habit of passing one layer twice)."""

    def __init__(self):
        super().__init__()
        table = Embedding(10, 4)
        self.query_titles = table
        self.candidate_titles = table

    def forward(self, title, previous):
        return (self.query_titles(title) * self.candidate_titles(previous).mean(1)).sum()


TITLE = torch.tensor([1, 2, 2])
PREVIOUS = torch.tensor([[2, 3], [3, 3], [9, 1]])


@pytest.mark.parametrize("model_cls", [TwoFeaturesOneModule, TwoAttributesOneTable])
def test_shared_table_has_one_parameter_and_gradients_add_up(model_cls):
    model = model_cls()
    params = rs.init(model, seed=0)
    assert len(rs.tree.leaves(params)) == 1
    (name,) = params
    table = params[name]["weight"]
    grad = torch.func.grad(lambda p: rs.apply(model, p, TITLE, PREVIOUS))(params)[name]["weight"]

    # Reference: treat the two uses as two independent copies and add their gradients.
    def two_copies(a, b):
        return (a[TITLE] * b[PREVIOUS].mean(1)).sum()

    ga, gb = torch.func.grad(two_copies, argnums=(0, 1))(table, table)
    torch.testing.assert_close(grad, ga + gb)
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0


def test_hashed_embedding_takes_bins_from_data_hashing():
    hashing = Hashing(16, salt=7)
    bins = hashing(pa.array(["u1", "u2", "u3", "u1"]))
    ids = torch.tensor(bins.to_pylist())
    layer = HashedEmbedding(16, 4)
    params = rs.init(layer, seed=0)
    assert layer.num_bins == 16 and params["weight"].abs().max() <= 0.05
    out = rs.apply(layer, params, ids)
    torch.testing.assert_close(out, params["weight"][ids])
    torch.testing.assert_close(out[0], out[3])  # same value, same bin, same vector
    with pytest.raises(IndexError, match=r"HashedEmbedding\(16, 4\).*Hashing"):
        rs.apply(layer, params, torch.tensor([16]))


def test_text_tower_bag_of_words_end_to_end():
    titles = ["Toy Story (1995)", "Heat (1995)", "Toy Soldiers"]
    vectorize = TextVectorization.fit(titles, output_sequence_length=4)
    tokens = torch.from_numpy(vectorize(titles))
    tower = BagEmbedding(vectorize.vocabulary_size(), 8, "mean")
    params = rs.init(tower, seed=1)
    out = rs.apply(tower, params, tokens)
    table = params["weight"]
    vocab = vectorize.get_vocabulary()
    expected_first = torch.stack([table[vocab.index(t)] for t in ("toy", "story", "1995")]).mean(0)
    torch.testing.assert_close(out[0], expected_first)
    assert out.shape == (3, 8)
