"""Hostile input to the vocabularies and hashing: every value gets an id, no row is dropped."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from torchrs_fn.data import Hashing, IntegerLookup, StringLookup, TextVectorization

HOSTILE = settings.get_profile("hostile")

# Any Unicode text Arrow can hold (no lone surrogates: they are not UTF-8), empty and long ones.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", " ", "[UNK]", "\x00", "é" * 500, "🙂" * 300, "a" * 5000]
)
int64s = st.integers(-(2**63), 2**63 - 1)


def _slow_string_ids(lookup: StringLookup, values: list[str]) -> list[int]:
    """The reference: a dict over ``get_vocabulary()``; unknown strings land in an OOV bucket."""
    vocab = lookup.get_vocabulary(include_special_tokens=False)
    index = {term: lookup.num_oov_indices + i for i, term in enumerate(vocab)}
    return [index.get(v, -1) for v in values]


@settings(HOSTILE, max_examples=80)
@given(
    fit_on=st.lists(texts, min_size=1, max_size=30),
    apply_to=st.lists(texts, max_size=30),
    num_oov=st.integers(1, 4),
    max_tokens=st.none() | st.integers(5, 40),
    chunked=st.booleans(),
)
def test_string_lookup_maps_every_value(fit_on, apply_to, num_oov, max_tokens, chunked):
    assume(max_tokens is None or max_tokens > num_oov)
    if all(v == "[UNK]" for v in fit_on):
        with pytest.raises(ValueError, match="min_frequency"):
            StringLookup.fit(fit_on, num_oov_indices=num_oov)
        return
    lookup = StringLookup.fit(fit_on, num_oov_indices=num_oov, max_tokens=max_tokens)
    assert "[UNK]" not in lookup.get_vocabulary(include_special_tokens=False)
    values = apply_to + fit_on
    arrow = pa.chunked_array([values[:3], values[3:]], pa.string()) if chunked else pa.array(values)
    ids = lookup(arrow)
    assert len(ids) == len(values)  # no row dropped
    if chunked:
        assert [len(c) for c in ids.chunks] == [len(c) for c in arrow.chunks]
    ids = np.asarray(ids.to_pylist())
    assert ids.dtype == np.int64
    assert ((ids >= 0) & (ids < lookup.vocabulary_size())).all()
    expected = np.asarray(_slow_string_ids(lookup, values))
    known = expected >= 0
    np.testing.assert_array_equal(ids[known], expected[known])
    assert (ids[~known] < num_oov).all()  # unknown values go to an OOV bucket, never dropped
    # The same value always gets the same id, and inverting gives back known terms.
    np.testing.assert_array_equal(lookup(values), ids)
    back = lookup.invert(ids).to_pylist()
    assert [b for b, k in zip(back, known) if k] == [v for v, k in zip(values, known) if k]
    assert all(b == "[UNK]" for b, k in zip(back, known) if not k)


@settings(HOSTILE, max_examples=60)
@given(
    fit_on=st.lists(int64s, min_size=1, max_size=30),
    apply_to=st.lists(int64s, max_size=30),
    num_oov=st.integers(0, 5),
    as_numpy=st.booleans(),
)
def test_integer_lookup_maps_every_value(fit_on, apply_to, num_oov, as_numpy):
    if all(v == -1 for v in fit_on):
        with pytest.raises(ValueError):
            IntegerLookup.fit(fit_on, num_oov_indices=num_oov)
        return
    lookup = IntegerLookup.fit(fit_on, num_oov_indices=num_oov)
    vocab = lookup.get_vocabulary(include_special_tokens=False)
    index = {term: num_oov + i for i, term in enumerate(vocab)}
    values = apply_to + [v for v in fit_on if v != -1]
    unknown = [v for v in values if v not in index]
    given_values = np.asarray(values, dtype=np.int64) if as_numpy else values
    if unknown and num_oov == 0:
        with pytest.raises(KeyError, match="not in the vocabulary"):
            lookup(given_values)
        return
    ids = np.asarray(lookup(given_values))
    assert ids.shape == (len(values),)
    for v, i in zip(values, ids.tolist()):
        # Keras: an unknown integer goes to bucket ``value mod num_oov_indices`` (floor modulo).
        assert i == index[v] if v in index else i == v % num_oov


@settings(HOSTILE, max_examples=60)
@given(
    values=st.lists(texts | st.none(), min_size=1, max_size=20),
    lookup_kind=st.sampled_from(["string", "hashing", "text"]),
)
def test_nulls_are_refused_not_mapped(values, lookup_kind):
    assume(None in values)
    first = values.index(None)
    layer = {
        "string": lambda: StringLookup(["a", "b"]),
        "hashing": lambda: Hashing(7),
        "text": lambda: TextVectorization(["a", "b"]),
    }[lookup_kind]()
    with pytest.raises(
        ValueError, match=rf"null value\(s\) \(the first at (flat )?position {first}\)"
    ):
        layer(pa.array(values, pa.string()))


@settings(HOSTILE, max_examples=60)
@given(
    values=st.one_of(
        st.lists(st.floats(), min_size=1, max_size=5),
        st.lists(st.booleans(), min_size=1, max_size=5),
        st.lists(st.one_of(st.integers(0, 9), texts), min_size=2, max_size=6).filter(
            lambda v: len({type(x) for x in v}) > 1
        ),
        st.lists(st.integers(2**64, 2**80), min_size=1, max_size=3),
        st.just({"a": 1}),
        st.just(3),
    ),
    which=st.sampled_from(["string", "integer"]),
)
def test_wrong_types_are_type_or_value_errors(values, which):
    lookup = StringLookup(["a"]) if which == "string" else IntegerLookup([1])
    is_ints = isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    )
    if which == "integer" and is_ints and all(-(2**63) <= v < 2**63 for v in values):
        return  # valid input
    with pytest.raises((TypeError, ValueError)):
        lookup(values)


@settings(HOSTILE, max_examples=60)
@given(ids=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=10))
def test_invert_refuses_out_of_range_ids(ids):
    lookup = StringLookup(["a", "b", "c"])
    size = lookup.vocabulary_size()
    if all(0 <= i < size for i in ids):
        assert len(lookup.invert(ids)) == len(ids)
    else:
        with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
            lookup.invert(ids)


@settings(HOSTILE, max_examples=80)
@given(
    values=st.one_of(st.lists(texts, max_size=30), st.lists(int64s, max_size=30)),
    num_bins=st.integers(1, 2**62),
    salt=st.none() | st.integers(0, 2**64 - 1),
    lists=st.booleans(),
)
def test_hashing_bins_every_value_in_range(values, num_bins, salt, lists):
    hashing = Hashing(num_bins, salt=salt)
    if lists:
        rows = [values[: len(values) // 2], [], values[len(values) // 2 :]]
        out = hashing(rows).to_pylist()  # nested Python lists -> Arrow list rows
        assert [len(r) for r in out] == [len(r) for r in rows]
        bins = np.asarray([b for r in out for b in r], dtype=np.int64)
    else:
        bins = np.asarray(hashing(values), dtype=np.int64)
    assert bins.shape == (len(values),)
    assert ((bins >= 0) & (bins < num_bins)).all()
    # Deterministic: the same value, the same bin; integers hash like their decimal string.
    for v, b in zip(values, bins.tolist()):
        assert hashing([str(v)])[0] == b


@settings(HOSTILE, max_examples=50)
@given(
    corpus=st.lists(texts, min_size=1, max_size=15),
    apply_to=st.lists(texts, max_size=15),
    split=st.sampled_from(["whitespace", "character"]),
    ngrams=st.none() | st.integers(1, 3),
    length=st.none() | st.integers(1, 12),
)
def test_text_vectorization_keeps_every_row(corpus, apply_to, split, ngrams, length):
    try:
        layer = TextVectorization.fit(
            corpus, split=split, ngrams=ngrams, output_sequence_length=length
        )
    except ValueError as e:
        assert "no tokens" in str(e)
        return
    values = apply_to + corpus
    out = layer(values)
    if length is not None:
        out = np.asarray(out)
        assert out.shape == (len(values), length)
    else:
        assert len(out) == len(values)  # one row per text, empty texts included
        out = np.asarray([i for row in np.asarray(out, dtype=object) for i in np.ravel(row)])
    out = np.asarray(out, dtype=np.int64).ravel()
    assert ((out >= 0) & (out < layer.vocabulary_size())).all()
