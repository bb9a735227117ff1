"""TextVectorization against Keras outputs and a pure-Python tokenizer.

The Keras values were produced with tf-keras 2.21.0 on TensorFlow 2.21.0
(``TF_USE_LEGACY_KERAS=1``, ``tf_keras.layers.TextVectorization``) and are written in as literals.
The Python reference standardises with ``str.lower`` on ASCII letters and ``re.sub`` with Keras's
pattern, splits with a regex on ASCII whitespace, and orders the vocabulary with ``Counter`` and
``sorted``.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from torchrs_fn.data import TextVectorization
from torchrs_fn.data.preprocessing import DEFAULT_STRIP_REGEX

DATA = [
    "The cat sat.",
    "the DOG sat!",
    "a cat, a dog",
    "Ünïcode ÉCOLE   x",
    "tab\tsep\nnl",
    "nb\u00a0sp",
    "dash-word it's",
    "b a",
]

# Keras 2.21: TextVectorization().adapt(DATA); get_vocabulary(); layer(DATA)
KERAS_VOCAB = [
    "",
    "[UNK]",
    "a",
    "the",
    "sat",
    "dog",
    "cat",
    "Ünïcode",
    "École",
    "x",
    "tab",
    "sep",
    "nl",
    "nb\xa0sp",
    "its",
    "dashword",
    "b",
]
KERAS_IDS = [
    [3, 6, 4, 0],
    [3, 5, 4, 0],
    [2, 6, 2, 5],
    [7, 8, 9, 0],
    [10, 11, 12, 0],
    [13, 0, 0, 0],
    [15, 14, 0, 0],
    [16, 2, 0, 0],
]


def _ascii_lower(s: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in s)


def _python_tokens(s: str) -> list[str]:
    s = re.sub(DEFAULT_STRIP_REGEX, "", _ascii_lower(s))
    return [t for t in re.split(r"[ \t\n\v\f\r]+", s) if t]


def _python_vocab(texts: list[str], max_terms: int | None = None) -> list[str]:
    counts = Counter(t for s in texts for t in _python_tokens(s))
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)
    return [t for t, _ in ordered][:max_terms]


def test_matches_keras_defaults():
    tv = TextVectorization.fit(DATA)
    assert tv.get_vocabulary() == KERAS_VOCAB
    assert tv.vocabulary_size() == len(KERAS_VOCAB)
    ids = tv(DATA)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64
    assert ids.tolist() == KERAS_IDS
    # Keras: layer(["", "zzz cat"]) -> [[0, 0], [1, 6]]: padding 0, unknown -> OOV 1.
    assert tv(["", "zzz cat"]).tolist() == [[0, 0], [1, 6]]


def test_max_tokens_and_output_sequence_length_match_keras():
    tv = TextVectorization.fit(DATA, max_tokens=5, output_sequence_length=3)
    # Keras: TextVectorization(max_tokens=5, output_sequence_length=3)
    assert tv.get_vocabulary() == ["", "[UNK]", "a", "the", "sat"]
    assert tv(DATA).tolist() == [
        [3, 1, 4],
        [3, 1, 4],
        [2, 1, 2],
        [1, 1, 1],
        [1, 1, 1],
        [1, 0, 0],
        [1, 1, 0],
        [1, 2, 0],
    ]


def test_ngrams_match_keras():
    tv = TextVectorization.fit(["a b c", "b c d"], ngrams=2)
    assert tv.get_vocabulary() == ["", "[UNK]", "c", "b c", "b", "d", "c d", "a b", "a"]
    assert tv(["a b c d"]).tolist() == [[8, 4, 2, 5, 7, 3, 6]]  # unigrams, then bigrams
    assert tv.tokenize(pa.array(["a b c d"])).to_pylist() == [
        ["a", "b", "c", "d", "a b", "b c", "c d"]
    ]
    tv13 = TextVectorization.fit(["a b c d"], ngrams=(1, 3))
    assert tv13.get_vocabulary() == ["", "[UNK]", "d", "c", "b c d", "b", "a b c", "a"]


def test_character_and_no_split_match_keras():
    chars = TextVectorization.fit(["héllo", "ab"], split="character", standardize=None)
    assert chars.get_vocabulary() == ["", "[UNK]", "l", "é", "o", "h", "b", "a"]
    assert chars(["hé"]).tolist() == [[5, 3]]
    assert chars.tokenize(["", "aé€𝄞"]).to_pylist() == [[], ["a", "é", "€", "𝄞"]]
    whole = TextVectorization.fit(["a b", "", "a b", "c"], split=None, standardize=None)
    assert whole.get_vocabulary() == ["", "[UNK]", "a b", "c"]
    # Keras returns [2, 0, 1] ([N]); here one-token rows [N, 1].
    assert whole(["a b", "", "q"]).tolist() == [[2], [0], [1]]


def test_ragged_and_arrow_outputs():
    tv = TextVectorization.fit(DATA, ragged=True)
    out = tv(pa.array(["the cat", ""]))
    assert out.type == pa.list_(pa.int64())
    assert out.to_pylist() == [[3, 6], []]  # Keras ragged=True: [[3, 6], []]
    padded = TextVectorization.fit(DATA, output_sequence_length=2)
    chunked = padded(pa.chunked_array([["the cat sat"], ["a", "zzz"]]))
    assert isinstance(chunked, pa.ChunkedArray)
    assert [len(c) for c in chunked.chunks] == [1, 2]
    assert chunked.type == pa.list_(pa.int64(), 2)
    assert chunked.to_pylist() == [[3, 6], [2, 0], [1, 0]]
    # numpy [N, 1] input, as Keras takes it
    assert padded(np.array([["the cat"], ["dog"]])).tolist() == [[3, 6], [5, 0]]


def test_against_a_python_tokenizer_on_generated_text():
    rng = np.random.default_rng(0)
    words = np.array(["Alpha", "beta,", "GAMMA!", "delta", "(eps)", "zeta's", "ÉTA", "theta."])
    lengths = rng.integers(0, 9, size=500)
    texts = [
        " \t".join(rng.choice(words, size=n, p=np.linspace(1, 3, len(words)) / 16)) for n in lengths
    ]
    tv = TextVectorization.fit(pa.array(texts), max_tokens=7, ragged=True)
    vocab = _python_vocab(texts, max_terms=5)
    assert tv.get_vocabulary() == ["", "[UNK]", *vocab]
    ids = tv(pa.array(texts)).to_pylist()
    index = {t: i + 2 for i, t in enumerate(vocab)}
    assert ids == [[index.get(t, 1) for t in _python_tokens(s)] for s in texts]
    assert tv.tokenize(texts).to_pylist() == [_python_tokens(s) for s in texts]


def test_given_vocabulary_may_start_with_special_tokens():
    a = TextVectorization(["", "[UNK]", "x", "y"])
    b = TextVectorization(["x", "y"])
    assert a.get_vocabulary() == b.get_vocabulary() == ["", "[UNK]", "x", "y"]
    assert a(["y x q"]).tolist() == [[3, 2, 1]]
    with pytest.raises(ValueError, match="mask token"):
        TextVectorization(["x", ""])
    with pytest.raises(ValueError, match="repeated"):
        TextVectorization(["x", "x"])


def test_unknown_tokens_never_get_a_term_id():
    tv = TextVectorization(["known"], standardize=None)
    ids = tv(["[UNK] known unknown Known"])
    assert ids.tolist() == [[1, 2, 1, 1]]


def test_bad_input():
    tv = TextVectorization(["x"])
    with pytest.raises(ValueError, match="null"):
        tv(pa.array(["x", None]))
    with pytest.raises(TypeError, match="texts must hold strings, got type int64"):
        tv(pa.array([1, 2]))
    with pytest.raises(TypeError, match="single values"):
        tv(pa.array([["x"]]))
    with pytest.raises(ValueError, match="standardize"):
        TextVectorization(["x"], standardize="upper")
    with pytest.raises(ValueError, match="max_tokens"):
        TextVectorization.fit(["a b"], max_tokens=2)
    with pytest.raises(ValueError, match="no tokens"):
        TextVectorization.fit(["", "  ?! "])
    with pytest.raises(ValueError, match="ragged"):
        TextVectorization(["x"], output_sequence_length=3, ragged=True)


def test_callables_and_state():
    tv = TextVectorization.fit(
        ["A-B c", "a-b"], standardize=None, split=lambda s: pc.split_pattern(s, "-")
    )
    assert tv.tokenize(["A-B c"]).to_pylist() == [["A", "B c"]]
    with pytest.raises(ValueError, match="callable"):
        tv.to_dict()
    fitted = TextVectorization.fit(DATA, ngrams=(1, 2), output_sequence_length=5)
    state = json.loads(json.dumps(fitted.to_dict()))
    again = TextVectorization.from_dict(state)
    assert again.get_vocabulary() == fitted.get_vocabulary()
    assert again(DATA).tolist() == fitted(DATA).tolist()
    assert repr(again).startswith("TextVectorization(vocabulary_size=")


def test_movielens_titles_match_keras(ml100k_dir):
    from torchrs_fn.data.datasets import movielens

    _, movies = movielens.load("100k", data_dir=ml100k_dir)
    tv = TextVectorization.fit(movies["movie_title"], max_tokens=10_000)
    # Keras 2.21: TextVectorization(max_tokens=10_000).adapt(titles) on the 1,682 u.item titles
    # gives the same 2,468-entry vocabulary and the same [1682, 16] ids; pinned: its head, the
    # first three rows and the sum of all ids.
    assert tv.vocabulary_size() == 2468
    assert tv.get_vocabulary()[:10] == [
        "",
        "[UNK]",
        "the",
        "1996",
        "1995",
        "1994",
        "1997",
        "of",
        "1993",
        "a",
    ]
    ids = tv(movies["movie_title"])
    assert ids.type == pa.list_(pa.int64(), 16)
    dense = np.array(ids.to_pylist())
    assert dense[:3, :4].tolist() == [[848, 67, 4, 0], [1772, 4, 0, 0], [309, 441, 4, 0]]
    assert int(dense.sum()) == 3417819
