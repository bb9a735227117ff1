"""The checkpoint and parameter-saving flags the examples share (not an example itself).

``add_checkpoint_flags(parser)`` adds

* ``--checkpoint-dir DIR``: ``train.fit`` saves a checkpoint at the end of every epoch (and every
  ``--checkpoint-every STEPS`` steps) and, started again with the same flags, resumes from the
  newest valid one (``train.Checkpointer``); a run that already finished resumes at its last
  epoch and goes straight to evaluation;
* ``--save-params PATH``: the trained parameters are written with ``torchrs_fn.save_tree``
  (read them back with ``torchrs_fn.load_tree``).

An example that trains several runs (models, seeds, losses, ...) names each one: a run named
``dcn_seed0`` checkpoints into ``DIR/dcn_seed0`` and saves its parameters to ``PATH`` with the
name inserted before the suffix (``params.trs`` -> ``params.dcn_seed0.trs``). An example with a
single run uses ``DIR`` and ``PATH`` as given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torchrs_fn as rs
from torchrs_fn import train

# --compile: "auto" lets the step decide (train.AutoCompile), on/off force it; the values are
# make_train_step's compile= argument.
COMPILE_CHOICES = {"auto": "auto", "on": True, "off": False}


def add_device_and_compile_flags(
    parser: argparse.ArgumentParser, *, steps: str = "the steps", no_compile: bool = True
) -> None:
    """Add ``--device`` and ``--compile auto|on|off`` (``COMPILE_CHOICES[args.compile]`` is the
    ``compile=`` to pass), and ``--no-compile`` (``--compile off``) unless ``no_compile`` is
    False; ``steps`` names what is compiled in the help text."""
    parser.add_argument(
        "--device", default=None, help="e.g. cpu or cuda (default: cuda when available)"
    )
    parser.add_argument(
        "--compile",
        choices=tuple(COMPILE_CHOICES),
        default="auto",
        help=f"compile {steps}: auto (only when the run pays the compile back), on or off",
    )
    if no_compile:
        parser.add_argument("--no-compile", dest="compile", action="store_const", const="off")


def add_checkpoint_flags(
    parser: argparse.ArgumentParser, *, runs: str | None = None, checkpoint: bool = True
) -> None:
    """Add ``--checkpoint-dir``, ``--checkpoint-every`` and ``--save-params`` to ``parser``.

    ``runs`` describes the run names of an example that trains several runs (e.g.
    ``"MODEL_seedN, e.g. dcn_seed0"``) for the help text; None for a single run.
    ``checkpoint=False`` adds ``--save-params`` only (for training that ``fit`` does not drive).
    Call ``check_checkpoint_flags`` on the parsed arguments.
    """
    if checkpoint:
        where = "DIR" if runs is None else f"DIR/RUN, one folder per run (RUN: {runs})"
        parser.add_argument(
            "--checkpoint-dir",
            default=None,
            metavar="DIR",
            help=f"checkpoint in {where} at the end of every epoch and, started again with the "
            "same flags, resume from the newest valid checkpoint (a finished run is not retrained)",
        )
        parser.add_argument(
            "--checkpoint-every",
            type=int,
            default=None,
            metavar="STEPS",
            help="also checkpoint every STEPS train steps (needs --checkpoint-dir)",
        )
    where = (
        "PATH"
        if runs is None
        else f"PATH with the run name inserted before the suffix (RUN: {runs}; "
        "params.trs -> params.RUN.trs)"
    )
    parser.add_argument(
        "--save-params",
        default=None,
        metavar="PATH",
        help=f"save the trained parameters (torchrs_fn.save_tree) to {where}",
    )


def check_checkpoint_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject ``--checkpoint-every`` without ``--checkpoint-dir`` (exits, as ``parser.error``)."""
    every = getattr(args, "checkpoint_every", None)
    if every is not None and args.checkpoint_dir is None:
        parser.error("--checkpoint-every needs --checkpoint-dir")
    if every is not None and every < 1:
        parser.error(f"--checkpoint-every must be >= 1, got {every}")


def checkpointer(
    args: argparse.Namespace,
    run_name: str | None = None,
    *,
    cls: type[train.Checkpointer] = train.Checkpointer,
) -> train.Checkpointer | None:
    """The ``checkpoint=`` argument of ``train.fit`` for this run: a ``cls`` (default
    ``train.Checkpointer``) over ``--checkpoint-dir`` (or its subfolder ``run_name``), or None
    without ``--checkpoint-dir``."""
    directory = getattr(args, "checkpoint_dir", None)
    if directory is None:
        return None
    if run_name is not None:
        directory = Path(directory) / run_name
    return cls(directory, every_steps=getattr(args, "checkpoint_every", None))


def params_path(path: str | os.PathLike, run_name: str | None = None) -> Path:
    """``path``, or with ``run_name`` inserted before its suffix: ``params.trs`` ->
    ``params.<run_name>.trs`` (``params`` -> ``params.<run_name>``)."""
    path = Path(path)
    if run_name is None:
        return path
    return path.with_name(f"{path.stem}.{run_name}{path.suffix}")


def save_params(args: argparse.Namespace, params: Any, run_name: str | None = None) -> Path | None:
    """Write ``params`` to ``--save-params`` (see ``params_path``); returns the path written, or
    None without ``--save-params``."""
    if getattr(args, "save_params", None) is None:
        return None
    path = params_path(args.save_params, run_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    rs.save_tree(path, params)
    return path
