"""Saving and loading pytrees of tensors without pickle, atomically, durably and checksummed.

The file format is deliberately simple (and close in spirit to safetensors). Format v2 (written
by ``save_tree``):

```
[0, 8)            uint64 little-endian n: the length of the header
[8, 8 + n)        UTF-8 JSON header: {"format": "torchrs_fn.tree.v2", "skeleton": the nesting of
                  the tree, "tensors": [{"name", "dtype", "shape", "start", "nbytes", "crc32"}, ...],
                  "body_nbytes": total bytes of the tensors}
[8 + n, L - 24)   the raw little-endian bytes of every tensor, back to back
[L - 24, L)       trailer: b"TRSTREE2", uint64 L (the file's length), uint32 CRC-32 of bytes
                  [0, 8 + n) (length field and header), uint32 CRC-32 of the trailer's first 20 bytes
```

``load_tree`` checks the trailer, the file length, the header's checksum and every tensor's
checksum before it builds anything, and raises ``CorruptFileError`` (a ``ValueError``) naming the
file and what failed: a truncated file, or one with a flipped bit anywhere, is never half-loaded.
CRC-32 (``zlib.crc32``) detects every burst error of up to 32 bits and all but 2**-32 of the
rest; it checks about 2.5 GB/s here (0.04 s per 100 MB, against 0.08 s for SHA-256) and guards
against accidents (torn writes, bad disks, partial copies), not against deliberate tampering.

Format v1 files (no checksums, no trailer; written before) still load, with only the bounds
checks they allow. Loading never executes code from the file: only JSON and raw bytes are read.
Lives at the top of the package, beside ``tree``, because both ``models`` (parameters) and
``train`` (checkpoints) use it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import tree

__all__ = ["save_tree", "load_tree", "CorruptFileError"]

_MAGIC_V1 = "torchrs_fn.tree.v1"
_MAGIC = "torchrs_fn.tree.v2"
_TRAILER_MAGIC = b"TRSTREE2"
# magic, file length, CRC-32 of length field + header, CRC-32 of the preceding 20 trailer bytes
_TRAILER = struct.Struct("<8sQII")
_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


class CorruptFileError(ValueError):
    """A tree file failed an integrity check: truncated, or its bytes differ from what was written.

    ``path`` is the file, ``problem`` what failed (the message holds both). A ``ValueError``, so
    code that caught ``load_tree``'s errors before keeps working.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"load_tree: {os.fspath(path)} {problem}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.problem))


def _encode(node: Any, out: list[tuple[str, torch.Tensor]], name: str = "") -> Any:
    """The tree's skeleton as JSON (dicts, lists, tensor placeholders); tensors go to ``out``."""
    if isinstance(node, torch.Tensor):
        out.append((name, node))
        return {"__tensor__": True}
    prefix = f"{name}." if name else ""
    if isinstance(node, dict):
        for k in node:
            if not isinstance(k, str):
                raise TypeError(f"save_tree: dict keys must be str, got {k!r} at {name or 'root'}")
        return {"__dict__": {k: _encode(v, out, f"{prefix}{k}") for k, v in node.items()}}
    if isinstance(node, (list, tuple)):
        # NamedTuples (optimizer and train states) are stored as tuples; ``load_tree(like=...)``
        # restores their classes.
        fields = getattr(node, "_fields", None)
        keys = fields if fields is not None else range(len(node))
        return {
            "__list__": [_encode(v, out, f"{prefix}{k}") for k, v in zip(keys, node)],
            "tuple": isinstance(node, tuple),
        }
    if isinstance(node, (int, float, bool, str)) or node is None:
        return {"__value__": node}
    raise TypeError(
        f"save_tree: cannot store a {type(node).__name__} (at {name or 'root'}); use nested dicts, "
        "lists, tuples and NamedTuples of tensors"
    )


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: the directory entry is data of its own)."""
    if os.name == "nt":  # Windows cannot open a directory; NTFS journals the rename itself
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        # A few file systems (some network mounts) cannot sync a directory at all.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_durably(path: Path, chunks: list[Any]) -> None:
    """Write ``chunks`` to ``path`` atomically and durably: a temp file in the same directory,
    flushed and fsynced, renamed over ``path``, then the directory fsynced. A crash at any point
    leaves either the old file or the new one (and at worst a stray ``*.tmp`` file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def save_tree(path: str | os.PathLike, pytree: Any) -> None:
    """Write a pytree of tensors (nested dicts / lists / tuples, plain scalars) to ``path``.

    Tensors are moved to CPU and stored contiguously, each with a CRC-32; the header gets one
    too, and a trailer records the file's length (format v2, see the module docstring). The
    write is atomic and durable: a temp file ``<path>.<pid>.tmp`` in the same directory is
    written, flushed and ``fsync``ed, renamed over ``path`` (``os.replace``), and the directory
    is ``fsync``ed, so after a crash ``path`` holds either the old file or the complete new one.
    """
    leaves: list[tuple[str, torch.Tensor]] = []
    skeleton = _encode(pytree, leaves)
    entries, blobs, offset = [], [], 0
    for name, x in leaves:
        x = x.detach().to("cpu").contiguous()
        dtype = str(x.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise TypeError(f"save_tree: unsupported dtype {x.dtype} (tensor {name or 'root'})")
        raw = x.reshape(-1).view(torch.uint8).numpy() if x.numel() else np.empty(0, dtype=np.uint8)
        entries.append(
            {
                "name": name,
                "dtype": dtype,
                "shape": list(x.shape),
                "start": offset,
                "nbytes": raw.nbytes,
                "crc32": zlib.crc32(raw),
            }
        )
        blobs.append(raw)
        offset += raw.nbytes
    header = json.dumps(
        {"format": _MAGIC, "skeleton": skeleton, "tensors": entries, "body_nbytes": offset}
    ).encode("utf-8")
    length = struct.pack("<Q", len(header))
    total = len(length) + len(header) + offset + _TRAILER.size
    head = _TRAILER.pack(_TRAILER_MAGIC, total, zlib.crc32(header, zlib.crc32(length)), 0)[:-4]
    trailer = head + struct.pack("<I", zlib.crc32(head))
    _write_durably(Path(path), [length, header, *blobs, trailer])


def _read_trailer(data: bytes) -> tuple[int, int] | None:
    """``(recorded file length, header CRC-32)`` from a valid v2 trailer, else None."""
    if len(data) < 8 + _TRAILER.size:
        return None
    at = len(data) - _TRAILER.size
    magic, total, header_crc, trailer_crc = _TRAILER.unpack_from(data, at)
    if magic != _TRAILER_MAGIC or zlib.crc32(data[at : at + _TRAILER.size - 4]) != trailer_crc:
        return None
    return total, header_crc


def _parse_header(path: Any, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(
            path, f"has a header that is not valid JSON ({e}): corrupt, or not a tree file"
        ) from None
    if not isinstance(header, dict):
        raise CorruptFileError(path, "has a header that is not a JSON object")
    return header


def _split(path: Any, data: bytes) -> tuple[dict[str, Any], memoryview, bool]:
    """``(header, body, checksummed)``: the file checked as far as its format allows."""
    size = len(data)
    if size < 8:
        raise CorruptFileError(path, f"is truncated: {size} bytes, too short for a tree file")
    (n,) = struct.unpack_from("<Q", data)
    trailer = _read_trailer(data)
    if trailer is not None:
        total, header_crc = trailer
        if total != size:
            raise CorruptFileError(
                path, f"is {size} bytes long but its trailer records {total}: truncated or extended"
            )
        if 8 + n + _TRAILER.size > size:
            raise CorruptFileError(
                path, f"is corrupt: its header length field ({n} bytes) does not fit in the file"
            )
        if zlib.crc32(memoryview(data)[: 8 + n]) != header_crc:
            raise CorruptFileError(
                path, f"is corrupt: the header (bytes 0..{8 + n}) fails its CRC-32 check"
            )
        header = _parse_header(path, data[8 : 8 + n])
        if header.get("format") != _MAGIC:
            raise ValueError(
                f"load_tree: {path} has an intact trailer but an unknown format "
                f"{header.get('format')!r} (written by a newer torchrs_fn?)"
            )
        body = memoryview(data)[8 + n : size - _TRAILER.size]
        if header.get("body_nbytes") != len(body):
            raise CorruptFileError(
                path,
                f"is corrupt: {len(body)} tensor bytes, its header records "
                f"{header.get('body_nbytes')}",
            )
        return header, body, True
    if 8 + n > size:
        raise CorruptFileError(
            path, f"is truncated: its header of {n} bytes does not fit in its {size} bytes"
        )
    header = _parse_header(path, data[8 : 8 + n])
    fmt = header.get("format")
    if fmt == _MAGIC:
        raise CorruptFileError(
            path,
            f"is truncated (or its trailer is damaged): its {size} bytes do not end in a valid "
            f"{_TRAILER.size}-byte {_MAGIC} trailer",
        )
    if fmt != _MAGIC_V1:
        raise ValueError(f"load_tree: {path} is not a torchrs_fn tree file (format {fmt!r})")
    return header, memoryview(data)[8 + n :], False


def _tensors(path: Any, header: dict[str, Any], body: memoryview, checked: bool) -> list:
    """Every tensor of the file, after checking all of their bounds and checksums."""
    slices = []
    try:
        for i, e in enumerate(header["tensors"]):
            label = f"tensor {i}" + (f" ({e['name']})" if e.get("name") else "")
            start, nbytes, dtype = int(e["start"]), int(e["nbytes"]), e["dtype"]
            shape = [int(s) for s in e["shape"]]
            if dtype not in _DTYPES:
                raise CorruptFileError(path, f"is corrupt: {label} has unknown dtype {dtype!r}")
            itemsize = torch.empty((), dtype=_DTYPES[dtype]).element_size()
            if nbytes != math.prod(shape) * itemsize or start < 0:
                raise CorruptFileError(
                    path, f"is corrupt: {label} records {nbytes} bytes at {start} for {shape}"
                )
            end = start + nbytes
            if end > len(body):
                raise CorruptFileError(
                    path,
                    f"is truncated: {label} needs tensor bytes {start}..{end}, has {len(body)}",
                )
            if checked and zlib.crc32(body[start:end]) != e["crc32"]:
                raise CorruptFileError(
                    path,
                    f"is corrupt: {label} (file bytes {start}..{end} of the tensor data) fails "
                    "its CRC-32 check",
                )
            slices.append((start, end, _DTYPES[dtype], shape))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CorruptFileError):
            raise
        raise CorruptFileError(path, f"has a malformed tensor table ({e!r})") from None
    out = []
    for start, end, dtype, shape in slices:
        if end > start:
            flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype)
        else:
            flat = torch.empty(0, dtype=dtype)
        out.append(flat.reshape(shape))
    return out


def load_tree(
    path: str | os.PathLike, *, like: Any = None, device: torch.device | str | None = None
) -> Any:
    """Read a pytree written by ``save_tree``. No pickle: only JSON and raw tensor bytes are read.

    The whole file is checked first (length, header and per-tensor CRC-32s); a truncated or
    corrupted file raises ``CorruptFileError`` naming the file and the check that failed, and
    nothing is returned. Files of format v1 (without checksums) load as before.

    Without ``like``, NamedTuples come back as plain tuples. With ``like`` (a tree of the same
    structure, e.g. a freshly initialised train state), the result takes its structure and
    classes; a structure mismatch is an error.
    """
    data = Path(path).read_bytes()
    header, body, checked = _split(path, data)
    tensors = _tensors(path, header, body, checked)
    if device is not None:
        tensors = [t.to(device) for t in tensors]
    it = iter(tensors)

    def decode(node: dict[str, Any]) -> Any:
        if "__tensor__" in node:
            return next(it)
        if "__dict__" in node:
            return {k: decode(v) for k, v in node["__dict__"].items()}
        if "__list__" in node:
            items = [decode(v) for v in node["__list__"]]
            return tuple(items) if node.get("tuple") else items
        return node["__value__"]

    try:
        result = decode(header["skeleton"])
    except (KeyError, TypeError, AttributeError, StopIteration) as e:
        raise CorruptFileError(path, f"has a malformed skeleton ({e!r})") from None
    if next(it, None) is not None:
        raise CorruptFileError(path, "has more tensors than its skeleton places")
    if like is None:
        return result
    want, got = tree.structure(like), tree.leaves(result)
    if want.num_leaves != len(got):
        raise ValueError(f"load_tree: {path} holds {len(got)} leaves, `like` has {want.num_leaves}")
    return tree.unflatten(want, got)
