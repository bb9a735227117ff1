"""Shared plumbing of the side-by-side benchmarks (torchrs_fn vs TensorFlow in another venv).

``compare_tfrs.py`` and ``data_path_vs_tfdata.py`` both run a TensorFlow process from the TFRS
virtualenv and a torchrs_fn process one after the other, read one JSON line from each, and print a
report headed by the machine it ran on. What they share lives here.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TF_PYTHON = REPO_ROOT / ".venv-tfrs" / "bin" / "python"


def log(message: str) -> None:
    """Progress messages go to stderr so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all CPUs, ``/proc/stat``); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_fraction(seconds: float = 5.0) -> float | None:
    """Fraction of all CPUs busy over the next ``seconds`` (``/proc/stat``); None elsewhere."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    after = machine_busy_seconds()
    if before is None or after is None:
        return None
    return (after - before) / (seconds * (os.cpu_count() or 1))


def wait_for_quiet(
    max_load: float | None, max_busy: float | None, max_wait: float, poll: float = 30.0
) -> dict[str, float | None]:
    """Waits (up to ``max_wait`` s, polling every ``poll`` s) while the 1-minute load average
    exceeds ``max_load`` or the machine's CPUs are busier than ``max_busy`` (a fraction, sampled
    over 5 s). Returns ``{"load_average", "busy_fraction", "waited_seconds"}`` as the run starts
    (``busy_fraction`` is None when ``max_busy`` is None)."""
    deadline = time.monotonic() + max_wait
    waited = 0.0
    while True:
        load = os.getloadavg()[0]
        busy = busy_fraction() if max_busy is not None else None
        reasons = []
        if max_load is not None and load > max_load:
            reasons.append(f"load average {load:.2f} > {max_load}")
        if max_busy is not None and busy is not None and busy > max_busy:
            reasons.append(f"CPUs {busy:.0%} busy > {max_busy:.0%}")
        if not reasons:
            break
        if time.monotonic() >= deadline:
            log(f"  still {' and '.join(reasons)} after {max_wait:.0f} s: running anyway")
            break
        log(f"  {' and '.join(reasons)}: waiting {poll:.0f} s")
        time.sleep(poll)
        waited += poll
    return {"load_average": load, "busy_fraction": busy, "waited_seconds": waited}


def matmul_operands(dtype: Any, size: int) -> tuple[Any, Any]:
    """Two ``size x size`` matrices in ``dtype`` (a torch dtype; random, seed 0) for
    ``matmul_gflops``. torch is imported here, not at the top, because the TensorFlow-side
    scripts import this module too."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dtype)
    b = torch.randn(size, size, generator=g).to(dtype)
    return a, b


def matmul_gflops(dtype: Any, size: int, a: Any = None, b: Any = None) -> float:
    """GFLOP/s of one ``size x size`` by ``size x size`` ``torch.mm`` in ``dtype`` (``a`` and
    ``b`` from ``matmul_operands`` may be passed in to reuse them)."""
    import torch

    if a is None:
        a, b = matmul_operands(dtype, size)
    t = time.perf_counter()
    torch.mm(a, b)
    return 2 * size**3 / (time.perf_counter() - t) / 1e9


def matmul_peak(size: int = 4096, repeats: int = 5) -> dict[str, float]:
    """This CPU's measured matrix-product peak: the median GFLOP/s of ``repeats`` square
    ``torch.mm`` of side ``size`` (after one warm-up each), as ``{"fp32": ..., "bf16": ...}``."""
    import statistics

    import torch

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = matmul_operands(dtype, size)
        matmul_gflops(dtype, size, a, b)
        peaks[name] = statistics.median(matmul_gflops(dtype, size, a, b) for _ in range(repeats))
    return peaks


def resolve_tf_python(explicit: str | None, flag: str) -> str:
    """The TensorFlow virtualenv's interpreter: ``explicit`` (from ``flag``), else
    ``.venv-tfrs/bin/python`` if it exists, else ``$TFRS_PYTHON``; exits with a hint otherwise."""
    if explicit:
        return explicit
    if DEFAULT_TF_PYTHON.exists():
        return str(DEFAULT_TF_PYTHON)
    from_env = os.environ.get("TFRS_PYTHON")
    if from_env:
        return from_env
    sys.exit(
        f"error: no TensorFlow interpreter: {DEFAULT_TF_PYTHON} does not exist and neither "
        f"{flag} nor $TFRS_PYTHON is set; run benchmarks/setup_tfrs_venv.sh"
    )


def tf_env() -> dict[str, str]:
    """Environment of the TensorFlow process: legacy Keras, quiet logs, no leaked Python paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def run_json(
    cmd: Sequence[str],
    env: dict[str, str],
    timeout: float,
    *,
    echo_prefixes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Runs ``cmd`` in the repository root and parses the JSON object on its last stdout line.

    Adds ``process_wall_seconds``; stderr lines starting with one of ``echo_prefixes`` are
    passed on to the log. A failed process or a last line that is not JSON is an error.
    """
    log(f"$ {shlex.join(cmd)}")
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    if echo_prefixes:
        for line in proc.stderr.splitlines():
            if line.startswith(echo_prefixes):
                log(f"  {line}")
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise RuntimeError(
            f"{shlex.join(cmd)}: last stdout line is not JSON: {lines[-1]!r}"
        ) from err
    result["process_wall_seconds"] = wall
    return result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def library_version(files: tuple[str, ...]) -> dict[str, Any]:
    """Which torchrs_fn was timed: its directory, a hash of the timed ``files`` (others may edit
    the library while a benchmark runs) and, when that directory is this checkout's, its git
    commit and whether those files have uncommitted changes."""
    import hashlib

    import torchrs_fn

    src = Path(torchrs_fn.__file__).resolve().parent
    digest = hashlib.sha1()
    for name in files:
        digest.update((src / name).read_bytes())
    info: dict[str, Any] = {"path": str(src), "files_sha1": digest.hexdigest()[:12]}
    if src != REPO_ROOT / "torchrs_fn":
        return info  # another copy (PYTHONPATH): its files_sha1 says which
    commit = git_commit()
    if commit is None:
        return info
    info["git_commit"] = commit
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *(f"torchrs_fn/{f}" for f in files)],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return info
    info["uncommitted_changes"] = bool(status.strip())
    return info


# --- the TensorFlow side's scripts (run in the TFRS virtualenv; this module is stdlib only) -----


def require_tf_keras(tf: Any) -> None:
    """Exit with a hint unless ``tf.keras`` is the legacy Keras 2 (``tf_keras``), which TFRS
    needs: ``TF_USE_LEGACY_KERAS=1`` and tf-keras installed."""
    if not tf.keras.__name__.startswith("tf_keras"):
        sys.exit(
            f"error: tf.keras is {tf.keras.__name__}; run with TF_USE_LEGACY_KERAS=1 "
            "and tf-keras installed"
        )


def run_and_report(run: Any, args: Any, key_width: int) -> None:
    """``result = run(args)`` with anything it prints sent to stderr, so that stdout holds only
    the report: one JSON line with ``args.json``, else one ``key: value`` line per entry."""
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = run(args)
    finally:
        sys.stdout = stdout
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>{key_width}}: {value}")
