"""``Hashing``: strings or integers to ``[0, num_bins)`` bins, deterministic and salted.

The counterpart of Keras's ``Hashing`` layer (the "hashing trick": no vocabulary, a fixed number of
bins, collisions accepted). The hash function differs, on purpose and documented: Keras uses
FarmHash64 (``tf.strings.to_hash_bucket_fast``), or keyed SipHash when salted
(``to_hash_bucket_strong``); neither is available without TensorFlow, so bins differ from Keras's.
What Keras guarantees is kept: the same value always gets the same bin, on every run and machine,
integers are hashed through their decimal string (so ``5`` and ``"5"`` share a bin), and
``mask_value`` reserves bin 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..lookup import fnv1a_64
from ._common import check_int, check_state, pack, unpack

__all__ = ["Hashing", "hash64"]

_FNV_OFFSET = 0xCBF29CE484222325
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection that spreads every input bit over all bits)."""
    h = h ^ (h >> _S33)
    h = h * _M1
    h = h ^ (h >> _S33)
    h = h * _M2
    return h ^ (h >> _S33)


def _splitmix64(x: int) -> int:
    """SplitMix64 of one integer (Python ints, so no numpy overflow warnings)."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _salt_basis(salt: int | None) -> int:
    return _FNV_OFFSET if salt is None else _FNV_OFFSET ^ _splitmix64(salt)


def hash64(strings: pa.Array, salt: int | None = None) -> np.ndarray:
    """The 64-bit hash behind ``Hashing``: ``[N]`` strings -> ``[N]`` uint64.

    ``fmix64(fnv1a_64(utf8 bytes, basis))`` where ``basis`` is FNV's offset basis
    ``0xcbf29ce484222325``, XOR-ed with ``splitmix64(salt)`` when a salt is given, and ``fmix64``
    is MurmurHash3's 64-bit finaliser. Each distinct string is hashed once.
    """
    encoded = pc.dictionary_encode(strings)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = _fmix64(fnv1a_64(encoded.dictionary, basis=_salt_basis(salt)))
    return distinct[encoded.indices.to_numpy(zero_copy_only=False)]


class Hashing:
    """Hashes strings or integers into ``num_bins`` bins: Keras ``Hashing`` with another hash.

    ``bin = hash64(value, salt) mod num_bins``, with ``hash64`` = MurmurHash3's ``fmix64`` of the
    64-bit FNV-1a hash of the value's UTF-8 bytes (integers hashed through their decimal string,
    as Keras does). The salt is mixed into FNV's starting value, so different salts give unrelated
    bin assignments. With ``mask_value`` given, that value goes to bin 0 and every other value to
    ``1 + hash64 mod (num_bins - 1)``, as in Keras.

    Not Keras's bins: Keras uses FarmHash64 / SipHash, which need TensorFlow. The same value gets
    the same bin on every run and machine (tested against pinned values).

    Args:
        num_bins: number of bins, >= 1 (>= 2 with ``mask_value``).
        salt: None, or an int in ``[0, 2**64)`` that changes every bin assignment (Keras takes an
            int or a pair of ints; give one int here).
        mask_value: None, or a string / int that always goes to bin 0.

    Applying it is a pure function of the value: ``Hashing(num_bins)(values)`` maps strings or
    integers (Arrow arrays, list arrays such as tags, numpy arrays, lists, integer torch tensors)
    to int64 bins of the same form. Floats raise ``TypeError``, nulls ``ValueError``.
    """

    def __init__(
        self, num_bins: int, *, salt: int | None = None, mask_value: str | int | None = None
    ) -> None:
        self.num_bins = check_int(num_bins, "num_bins", 2 if mask_value is not None else 1)
        if salt is not None:
            if isinstance(salt, bool) or not isinstance(salt, (int, np.integer)):
                raise TypeError(f"salt must be None or an int, got {type(salt).__name__}")
            if not 0 <= salt < 2**64:
                raise ValueError(f"salt must lie in [0, 2**64), got {salt}")
            salt = int(salt)
        if mask_value is not None and (
            isinstance(mask_value, bool) or not isinstance(mask_value, (str, int, np.integer))
        ):
            raise TypeError(
                f"mask_value must be None, a str or an int, got {type(mask_value).__name__}"
            )
        self.salt = salt
        self.mask_value = int(mask_value) if isinstance(mask_value, np.integer) else mask_value

    def __call__(self, values: Any) -> Any:
        """Maps values to int64 bins in ``[0, num_bins)``.

        Args:
            values: strings or integers: a pyarrow Array/ChunkedArray (of lists too), a numpy
                array (any shape), a list, or an integer torch tensor.

        Returns:
            int64 bins in the input's form: an Arrow array (same chunks, same list rows), a numpy
            array of the input's shape, or a torch tensor on the input's device.
        """
        flat, layout = unpack(values, "values")
        if pa.types.is_null(flat.type):
            flat = flat.cast(pa.string())
        t = flat.type
        is_string = (
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
        )
        if not (is_string or pa.types.is_integer(t)):
            raise TypeError(
                f"Hashing takes strings or integers, but values has type {t}"
                + (
                    "; round or bucketize floats first (Discretization)"
                    if pa.types.is_floating(t)
                    else ""
                )
            )
        strings = flat if is_string else pc.cast(flat, pa.string())
        h = hash64(strings, self.salt)
        if self.mask_value is None:
            bins = (h % np.uint64(self.num_bins)).astype(np.int64)
        else:
            if isinstance(self.mask_value, str) != is_string:
                raise TypeError(
                    f"mask_value {self.mask_value!r} is a {type(self.mask_value).__name__} but "
                    f"values has type {t}"
                )
            bins = (h % np.uint64(self.num_bins - 1)).astype(np.int64) + 1
            masked = pc.equal(flat, pa.scalar(self.mask_value, t)).to_numpy(zero_copy_only=False)
            bins[masked] = 0
        return pack(bins, layout)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: ``{"type", "num_bins", "salt", "mask_value"}``."""
        return {
            "type": "Hashing",
            "num_bins": self.num_bins,
            "salt": self.salt,
            "mask_value": self.mask_value,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Hashing:
        """Rebuilds a ``Hashing`` from ``to_dict()`` output."""
        check_state(state, cls.__name__, {"type", "num_bins", "salt", "mask_value"})
        return cls(state["num_bins"], salt=state["salt"], mask_value=state["mask_value"])

    def __repr__(self) -> str:
        mask = "" if self.mask_value is None else f", mask_value={self.mask_value!r}"
        return f"Hashing(num_bins={self.num_bins}, salt={self.salt}{mask})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hashing) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]
