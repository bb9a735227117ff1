"""Saving and loading pytrees of tensors without pickle.

The file format is deliberately simple (and close in spirit to safetensors): 8 bytes giving the
length of a UTF-8 JSON header, the header, then the raw little-endian bytes of every tensor. The
header records each leaf's dotted path, dtype, shape and byte range, plus the nesting of the tree,
so loading never executes code from the file. Lives at the top of the package, beside ``tree``, because
both ``models`` (parameters) and ``train`` (checkpoints) use it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from . import tree

__all__ = ["save_tree", "load_tree"]

_MAGIC = "torchrs_fn.tree.v1"
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


def _encode(node: Any, out: list[torch.Tensor]) -> Any:
    """The tree's skeleton as JSON (dicts, lists, tensor placeholders); tensors go to ``out``."""
    if isinstance(node, torch.Tensor):
        out.append(node)
        return {"__tensor__": True}
    if isinstance(node, dict):
        for k in node:
            if not isinstance(k, str):
                raise TypeError(f"save_tree: dict keys must be str, got {k!r}")
        return {"__dict__": {k: _encode(v, out) for k, v in node.items()}}
    if isinstance(node, (list, tuple)):
        # NamedTuples (optimizer and train states) are stored as tuples; ``load_tree(like=...)``
        # restores their classes.
        return {"__list__": [_encode(v, out) for v in node], "tuple": isinstance(node, tuple)}
    if isinstance(node, (int, float, bool, str)) or node is None:
        return {"__value__": node}
    raise TypeError(
        f"save_tree: cannot store a {type(node).__name__}; use nested dicts, lists, tuples and "
        "NamedTuples of tensors"
    )


def save_tree(path: str | os.PathLike, pytree: Any) -> None:
    """Write a pytree of tensors (nested dicts / lists / tuples, plain scalars) to ``path``.

    Tensors are moved to CPU and stored contiguously; the write is atomic (temp file + rename).
    """
    leaves: list[torch.Tensor] = []
    skeleton = _encode(pytree, leaves)
    entries, offset = [], 0
    blobs = []
    for x in leaves:
        x = x.detach().to("cpu").contiguous()
        dtype = str(x.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise TypeError(f"save_tree: unsupported dtype {x.dtype}")
        raw = x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b""
        entries.append(
            {"dtype": dtype, "shape": list(x.shape), "start": offset, "nbytes": len(raw)}
        )
        blobs.append(raw)
        offset += len(raw)
    header = json.dumps({"format": _MAGIC, "skeleton": skeleton, "tensors": entries}).encode(
        "utf-8"
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def load_tree(
    path: str | os.PathLike, *, like: Any = None, device: torch.device | str | None = None
) -> Any:
    """Read a pytree written by ``save_tree``. No pickle: only JSON and raw tensor bytes are read.

    Without ``like``, NamedTuples come back as plain tuples. With ``like`` (a tree of the same
    structure, e.g. a freshly initialised train state), the result takes its structure and
    classes; a structure mismatch is an error.
    """
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"load_tree: {path} is too short to be a torchrs_fn tree file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"load_tree: {path} is truncated (header of {n} bytes does not fit)")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    if header.get("format") != _MAGIC:
        raise ValueError(
            f"load_tree: {path} is not a torchrs_fn tree file (format {header.get('format')!r})"
        )
    body = memoryview(data)[8 + n :]
    tensors = []
    for e in header["tensors"]:
        end = e["start"] + e["nbytes"]
        if end > len(body):
            raise ValueError(f"load_tree: {path} is truncated (tensor bytes {e['start']}..{end})")
        dtype = _DTYPES[e["dtype"]]
        if e["nbytes"]:
            flat = torch.frombuffer(bytearray(body[e["start"] : end]), dtype=dtype)
        else:
            flat = torch.empty(0, dtype=dtype)
        tensors.append(flat.reshape(e["shape"]).to(device) if device else flat.reshape(e["shape"]))
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

    result = decode(header["skeleton"])
    if like is None:
        return result
    want, got = tree.structure(like), tree.leaves(result)
    if want.num_leaves != len(got):
        raise ValueError(f"load_tree: {path} holds {len(got)} leaves, `like` has {want.num_leaves}")
    return tree.unflatten(want, got)
