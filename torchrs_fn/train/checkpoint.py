"""Checkpoints of a whole training position, written so that a crash can always resume from one.

A ``Checkpointer`` owns one directory:

```
DIR/
  ckpt-0000000040.trs        one file per save, named by the global step (the state's step
  ckpt-0000000060.trs        count), zero-padded to 10 digits; only the newest ``keep`` stay
  ckpt-0000000060.trs.<pid>.tmp   left behind only by a crash during a write: ignored, and
                                   safe to delete
```

Each file is one ``serialization.save_tree`` tree (format v2: atomic and durable writes,
CRC-32s over the header and every tensor, the file length in a trailer) holding a ``Checkpoint``:

- ``state``: the whole ``TrainState`` (params, optimizer state, step, hparams, random key);
- ``epoch``: the epochs ``fit`` has completed; ``batch``: the batches of the next epoch already
  consumed; ``loader_epoch``: the ``Loader`` epoch (and so the shuffle) of that next epoch;
- ``history``: ``fit``'s per-epoch records so far; ``sums``: the running log sums
  (``MeanState``, float64) of the partial epoch; ``elapsed``: its wall and CPU seconds so far;
- ``loader``: the loader's settings (rows, batch size, shuffle, seed, ...), so that a resume
  with a different loader is an error instead of a silently different run.

``latest`` loads the newest checkpoint that passes every check; a corrupt or truncated file is
skipped with a warning that names it, never half-loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import tree
from ..metrics.aggregate import MeanState
from ..serialization import CorruptFileError, load_tree, save_tree

__all__ = ["Checkpoint", "Checkpointer"]

_KIND = "torchrs_fn.checkpoint.v1"
_NAME = re.compile(r"^ckpt-(\d+)\.trs$")


@dataclasses.dataclass(frozen=True, eq=False)
class Checkpoint:
    """One training position (see the module docstring for each field).

    ``step`` is the global step the file is named after; ``path`` is where it was loaded from
    (None for one not loaded from a file).
    """

    state: Any
    step: int
    epoch: int = 0
    batch: int = 0
    loader_epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sums: dict[str, MeanState] = dataclasses.field(default_factory=dict)
    elapsed: tuple[float, float] = (0.0, 0.0)
    loader: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: Path | None = None


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Checkpointer: {name} must be an int >= {low}, got {value!r}")
    return value


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} {tuple(x.shape)}"
    return type(x).__name__


def _restore_like(path: Path, state: Any, like: Any) -> Any:
    """``state`` (as loaded: plain tuples) in ``like``'s structure, classes and devices; every
    tensor leaf must match ``like``'s dtype and shape."""
    want = tree.flatten_with_paths(like)
    got = tree.leaves(state)
    if len(want) != len(got):
        raise ValueError(
            f"Checkpointer: {path} holds a state of {len(got)} leaves, `like` has {len(want)}: "
            "a checkpoint of another model or optimizer? Use a fresh checkpoint directory"
        )
    out = []
    for (name, ref), x in zip(want, got):
        if isinstance(ref, torch.Tensor):
            if not isinstance(x, torch.Tensor) or x.dtype != ref.dtype or x.shape != ref.shape:
                raise ValueError(
                    f"Checkpointer: {path} holds {_describe(x)} at state leaf {name!r}, `like` "
                    f"has {_describe(ref)}: a checkpoint of another model or optimizer?"
                )
            x = x.to(ref.device)
        out.append(x)
    return tree.unflatten(tree.structure(like), out)


class Checkpointer:
    """Saves and finds training checkpoints in ``directory`` (created on the first save).

    Args:
        directory: the folder the checkpoints live in (one run per folder).
        every_steps: ``train.fit`` saves after every ``every_steps``-th global step, besides the
            end of every epoch; None (default) saves at epoch ends only.
        keep: how many of the newest checkpoints to keep (>= 1). Older ones are deleted only
            after the new one is durable on disk.

    ``fit(..., checkpoint=Checkpointer(dir))`` is the usual way in; ``save`` / ``latest`` /
    ``load`` also serve a hand-written loop.
    """

    def __init__(
        self, directory: str | os.PathLike, *, every_steps: int | None = None, keep: int = 3
    ) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"Checkpointer: {self.directory} exists and is not a directory")
        self.every_steps = (
            None if every_steps is None else _check_int("every_steps", every_steps, 1)
        )
        self.keep = _check_int("keep", keep, 1)

    def __repr__(self) -> str:
        return (
            f"Checkpointer({str(self.directory)!r}, every_steps={self.every_steps}, "
            f"keep={self.keep})"
        )

    def path_for(self, step: int) -> Path:
        """The file a checkpoint at global step ``step`` is written to."""
        return self.directory / f"ckpt-{_check_int('step', step, 0):010d}.trs"

    def _numbered(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            m = _NAME.match(entry.name)
            if m and entry.is_file():
                found.append((int(m.group(1)), entry))
        return sorted(found)

    def paths(self) -> list[Path]:
        """The checkpoint files present, oldest (lowest step) first; ``*.tmp`` files are not
        checkpoints and are ignored."""
        return [p for _, p in self._numbered()]

    def save(self, checkpoint: Checkpoint) -> Path:
        """Write ``checkpoint`` to ``path_for(checkpoint.step)`` (atomically and durably, via
        ``save_tree``), then delete all but the newest ``keep`` checkpoints. Returns the path.

        Files of a step above ``checkpoint.step`` belong to a line of training that was abandoned
        (a corrupt newest file skipped by ``latest``, or a run this one resumed from before): they
        are deleted with a warning, so that the next resume cannot jump onto them.
        """
        step = _check_int("step", checkpoint.step, 0)
        self.directory.mkdir(parents=True, exist_ok=True)
        body = {
            "kind": _KIND,
            "step": step,
            "epoch": _check_int("epoch", checkpoint.epoch, 0),
            "batch": _check_int("batch", checkpoint.batch, 0),
            "loader_epoch": _check_int("loader_epoch", checkpoint.loader_epoch, 0),
            "loader": dict(checkpoint.loader),
            "history": list(checkpoint.history),
            "sums": {k: (s.total, s.count) for k, s in checkpoint.sums.items()},
            "elapsed": [float(t) for t in checkpoint.elapsed],
            "state": checkpoint.state,
        }
        path = self.path_for(step)
        save_tree(path, body)
        numbered = self._numbered()
        for s, p in numbered:
            if s > step:
                warnings.warn(
                    f"Checkpointer: deleting {p}: its step {s} is ahead of the checkpoint just "
                    f"saved at step {step}, so it belongs to an abandoned line of training",
                    stacklevel=2,
                )
                p.unlink(missing_ok=True)
        behind = [p for s, p in numbered if s <= step]
        for p in behind[: -self.keep]:
            p.unlink(missing_ok=True)
        return path

    def load(self, path: str | os.PathLike, *, like: Any = None) -> Checkpoint:
        """Read one checkpoint file. With ``like`` (a freshly initialised ``TrainState``) the
        state takes its classes and devices, and every leaf must match its dtype and shape.

        Raises ``CorruptFileError`` for a truncated or corrupted file, ``ValueError`` for a file
        that is not a checkpoint or does not fit ``like``.
        """
        path = Path(path)
        raw = load_tree(path)
        if not isinstance(raw, dict) or raw.get("kind") != _KIND:
            raise ValueError(f"Checkpointer: {path} is a tree file but not a {_KIND} checkpoint")
        state = raw["state"]
        if like is not None:
            state = _restore_like(path, state, like)
        leaves = [x for x in tree.leaves(state) if isinstance(x, torch.Tensor)]
        device = leaves[0].device if leaves else torch.device("cpu")
        sums = {k: MeanState(*(x.to(device) for x in pair)) for k, pair in raw["sums"].items()}
        wall, cpu = raw["elapsed"]
        return Checkpoint(
            state=state,
            step=raw["step"],
            epoch=raw["epoch"],
            batch=raw["batch"],
            loader_epoch=raw["loader_epoch"],
            history=list(raw["history"]),
            sums=sums,
            elapsed=(wall, cpu),
            loader=dict(raw["loader"]),
            path=path,
        )

    def latest(self, *, like: Any = None) -> Checkpoint | None:
        """The newest checkpoint that loads intact (see ``load``), or None when there is none.

        A corrupt or truncated file (``CorruptFileError``), or one that vanished meanwhile, is
        skipped with a warning naming it, and the next older one is tried. A file that is intact
        but does not fit ``like`` is an error, not skipped: an older one would not fit either.
        """
        for _, path in reversed(self._numbered()):
            try:
                return self.load(path, like=like)
            except (CorruptFileError, FileNotFoundError) as e:
                warnings.warn(
                    f"Checkpointer: skipping checkpoint {path}, which cannot be loaded: {e}",
                    stacklevel=2,
                )
        return None
