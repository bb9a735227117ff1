"""Spotify Million Playlist Dataset (MPD) as two Arrow tables: playlists and their tracks.

``playlists, interactions = load("spotify_million_playlist_dataset/data")`` reads the slice
files ``mpd.slice.<first>-<last>.json`` (1,000 playlists each) from a folder (or its ``data/``
subfolder), from the MPD zip itself, or a single slice file; ``.json.gz`` slices are read too.
Slices are ordered by their first pid, so rows come in pid order for the published files.

playlists (``PLAYLISTS_SCHEMA``), one row per playlist:

| column | Arrow type | value |
|---|---|---|
| ``pid`` | ``int64`` | playlist id |
| ``name`` | ``string`` | playlist name |
| ``description`` | ``string`` | null when the playlist has none (the field is optional) |
| ``collaborative`` | ``bool`` | the file's ``"true"`` / ``"false"`` |
| ``modified_at`` | ``int64`` | seconds since 1970-01-01 UTC |
| ``num_tracks``, ``num_albums``, ``num_followers``, ``num_edits``, ``num_artists`` | ``int64`` | as in the file |
| ``duration_ms`` | ``int64`` | total duration of the playlist |

interactions (``INTERACTIONS_SCHEMA``), one row per track of a playlist, in playlist order and
then ``pos`` order: ``pid``, ``pos`` (``int64``), ``track_uri``, ``artist_uri``, ``album_uri``,
``track_name``, ``artist_name``, ``album_name`` (``string``), ``duration_ms`` (``int64``).

Each slice is parsed by ``pyarrow.json`` as one JSON document (``newlines_in_values=True``) and
flattened with ``pyarrow.compute`` list kernels; there is no Python object per playlist or
track. ``load`` reads slices on a thread pool (``workers``), each worker holding one slice's
bytes and tables at a time, and concatenates the Arrow tables (one chunk per slice);
``iter_slices`` streams them one by one.

Validation, with errors naming the file and the playlist's pid: every playlist field except
``description`` and every track field must be present and non-null; ``collaborative`` must be
``"true"`` or ``"false"``; ``num_tracks`` must equal the number of ``tracks``; ``load`` also
rejects a pid that occurs twice.

The MPD is not downloaded: AIcrowd hands it out after accepting its terms
(https://www.aicrowd.com/challenges/spotify-million-playlist-dataset-challenge).
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

__all__ = [
    "INTERACTIONS_SCHEMA",
    "PLAYLISTS_SCHEMA",
    "MPD",
    "MPDSlice",
    "iter_slices",
    "load",
    "slice_names",
]

_STRING, _INT64 = pa.string(), pa.int64()

PLAYLISTS_SCHEMA = pa.schema(
    [
        ("pid", _INT64),
        ("name", _STRING),
        ("description", _STRING),
        ("collaborative", pa.bool_()),
        ("modified_at", _INT64),
        ("num_tracks", _INT64),
        ("num_albums", _INT64),
        ("num_followers", _INT64),
        ("num_edits", _INT64),
        ("duration_ms", _INT64),
        ("num_artists", _INT64),
    ]
)
INTERACTIONS_SCHEMA = pa.schema(
    [
        ("pid", _INT64),
        ("pos", _INT64),
        ("track_uri", _STRING),
        ("artist_uri", _STRING),
        ("album_uri", _STRING),
        ("track_name", _STRING),
        ("artist_name", _STRING),
        ("album_name", _STRING),
        ("duration_ms", _INT64),
    ]
)

_TRACK_FIELDS = [f for f in INTERACTIONS_SCHEMA if f.name != "pid"]
_PLAYLIST_FIELDS = [
    pa.field("collaborative", _STRING) if f.name == "collaborative" else f for f in PLAYLISTS_SCHEMA
]
_RAW = pa.schema(
    [
        (
            "playlists",
            pa.list_(
                pa.struct([*_PLAYLIST_FIELDS, ("tracks", pa.list_(pa.struct(_TRACK_FIELDS)))])
            ),
        )
    ]
)
_PARSE = pajson.ParseOptions(
    explicit_schema=_RAW, unexpected_field_behavior="ignore", newlines_in_values=True
)
_SLICE_NAME = re.compile(r"mpd\.slice\.(\d+)-(\d+)\.json(\.gz)?$")


class MPD(NamedTuple):
    """``load``'s result: ``playlists, interactions = load(path)``."""

    playlists: pa.Table
    interactions: pa.Table


class MPDSlice(NamedTuple):
    """One slice file's tables, as ``iter_slices`` yields them."""

    name: str
    playlists: pa.Table
    interactions: pa.Table


class _Ref(NamedTuple):
    """Where one slice is: a file, or a member of a zip."""

    path: Path
    member: str | None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def load(
    path: str | os.PathLike[str],
    *,
    slices: int | Iterable[int] | None = None,
    workers: int | None = None,
) -> MPD:
    """Reads MPD slice files into ``MPD(playlists, interactions)`` (see the module docstring).

    Args:
        path: a folder holding ``mpd.slice.*.json`` (or holding ``data/`` with them), the
            MPD zip, or one slice file.
        slices: None for all; an int ``n`` for the first ``n`` slices (by first pid); or indices
            into that sorted list (``range(10, 20)``).
        workers: threads parsing slices at once (pyarrow releases the GIL); None uses one per CPU,
            at most the number of slices. Memory is about one slice (~35 MB of JSON and its
            tables) per worker, plus the result.

    Returns:
        ``MPD(playlists, interactions)`` with ``PLAYLISTS_SCHEMA`` and ``INTERACTIONS_SCHEMA``,
        one chunk per slice, in slice order.

    Raises:
        FileNotFoundError: no slice files at ``path``.
        ValueError: a slice that is not valid MPD JSON or breaks a rule (message names the file
            and pid); a pid in two places; a bad ``slices`` / ``workers``.
    """
    refs = _select(_find_slices(path), slices)
    if workers is None:
        workers = min(len(refs), os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if workers == 1:
        parts = [_read_slice(ref) for ref in refs]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpd") as pool:
            parts = list(pool.map(_read_slice, refs))
    playlists = pa.concat_tables([p.playlists for p in parts])
    interactions = pa.concat_tables([p.interactions for p in parts])
    _check_unique_pids(playlists, parts)
    return MPD(playlists, interactions)


def iter_slices(
    path: str | os.PathLike[str], *, slices: int | Iterable[int] | None = None
) -> Iterator[MPDSlice]:
    """Yields ``MPDSlice(name, playlists, interactions)`` per slice, one slice in memory at a time.

    Same ``path`` and ``slices`` as ``load``; same schemas and validation, except that a pid
    repeated in two slices is not detected.
    """
    for ref in _select(_find_slices(path), slices):
        yield _read_slice(ref)


def slice_names(path: str | os.PathLike[str]) -> list[str]:
    """The slice files ``load`` would read at ``path``, in order."""
    return [ref.name for ref in _find_slices(path)]


# -- finding slices ------------------------------------------------------------------------------


def _order(name: str) -> tuple[int, str]:
    match = _SLICE_NAME.search(name)
    return (int(match.group(1)) if match else -1, name)


def _find_slices(path: str | os.PathLike[str]) -> list[_Ref]:
    path = Path(path).expanduser()
    if path.is_file():
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if _SLICE_NAME.search(Path(m).name)]
            refs = [_Ref(path, m) for m in sorted(members, key=lambda m: _order(Path(m).name))]
        else:
            refs = [_Ref(path, None)]
    elif path.is_dir():
        files = [p for folder in (path, path / "data") for p in folder.glob("mpd.slice.*.json*")]
        files = [p for p in files if _SLICE_NAME.search(p.name)]
        refs = [_Ref(p, None) for p in sorted(files, key=lambda p: _order(p.name))]
    else:
        refs = []
    if not refs:
        raise FileNotFoundError(
            f"no MPD slice files (mpd.slice.<first>-<last>.json) at {path}. The Million Playlist "
            "Dataset is not downloaded automatically: get it from "
            "https://www.aicrowd.com/challenges/spotify-million-playlist-dataset-challenge and "
            "pass its data/ folder, the zip, or a slice file."
        )
    return refs


def _select(refs: list[_Ref], slices: int | Iterable[int] | None) -> list[_Ref]:
    if slices is None:
        return refs
    if isinstance(slices, bool):
        raise ValueError(f"slices must be an int or indices, got {slices!r}")
    if isinstance(slices, (int, np.integer)):
        if slices < 1:
            raise ValueError(f"slices must be at least 1, got {slices}")
        return refs[:slices]
    chosen = []
    for i in slices:
        if not -len(refs) <= i < len(refs):
            raise ValueError(f"slice index {i} is out of range: there are {len(refs)} slices")
        chosen.append(refs[i])
    if not chosen:
        raise ValueError("slices selects no slice")
    return chosen


# -- reading one slice ---------------------------------------------------------------------------


def _slice_bytes(ref: _Ref) -> bytes:
    try:
        if ref.member is not None:
            with zipfile.ZipFile(ref.path) as zf:
                data = zf.read(ref.member)
        else:
            data = ref.path.read_bytes()
        if data[:2] == b"\x1f\x8b":  # gzip, whatever the name says
            with pa.input_stream(pa.py_buffer(data), compression="gzip") as stream:
                data = stream.read()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ValueError(
            f"{ref.name} could not be read to the end ({e}): truncated or corrupt"
        ) from e
    return data


def _read_slice(ref: _Ref) -> MPDSlice:
    data = _slice_bytes(ref)
    name = ref.name
    try:
        raw = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(block_size=max(len(data) + 1, 1 << 20)),
            parse_options=_PARSE,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ValueError(f"{name} is not an MPD slice (one JSON object with playlists): {e}") from e
    if raw.num_rows != 1:
        raise ValueError(f"{name} holds {raw.num_rows} JSON objects; an MPD slice holds one")
    lists = raw["playlists"].combine_chunks()
    if isinstance(lists, pa.ChunkedArray):
        lists = pa.concat_arrays(lists.chunks)
    if lists.null_count:
        raise ValueError(f'{name} has no "playlists" list')
    items = pc.list_flatten(lists)
    if items.null_count:
        raise ValueError(f"{name}: playlist #{_first_null(items)} is null")
    pids = items.field("pid")
    if pids.null_count:
        i = _first_null(pids)
        raise ValueError(f'{name}: playlist #{i} (0-based) has no "pid"')

    def where(i: int) -> str:
        return f"{name}: playlist pid {pids[i].as_py()}"

    for field in _PLAYLIST_FIELDS:
        if field.name != "description" and items.field(field.name).null_count:
            raise ValueError(f'{where(_first_null(items.field(field.name)))} has no "{field.name}"')
    tracks = items.field("tracks")
    if tracks.null_count:
        raise ValueError(f'{where(_first_null(tracks))} has no "tracks"')

    collaborative = items.field("collaborative")
    is_true = pc.equal(collaborative, "true")
    known = pc.or_(is_true, pc.equal(collaborative, "false"))
    if not pc.all(known).as_py():
        i = _first_false(known)
        raise ValueError(
            f'{where(i)}: "collaborative" is {collaborative[i].as_py()!r}, not "true" or "false"'
        )
    lengths = pc.list_value_length(tracks)
    agree = pc.equal(lengths, items.field("num_tracks"))
    if not pc.all(agree).as_py():
        i = _first_false(agree)
        raise ValueError(
            f"{where(i)}: num_tracks is {items.field('num_tracks')[i].as_py()} but it lists "
            f"{lengths[i].as_py()} tracks"
        )

    flat = pc.list_flatten(tracks)
    owner = pc.list_parent_indices(tracks)
    if flat.null_count:
        j = _first_null(flat)
        raise ValueError(f"{where(owner[j].as_py())}: track #{j} of the slice is null")
    for field in _TRACK_FIELDS:
        column = flat.field(field.name)
        if column.null_count:
            j = _first_null(column)
            pos = flat.field("pos")[j].as_py()
            raise ValueError(f'{where(owner[j].as_py())}: track at pos {pos} has no "{field.name}"')

    playlists = pa.Table.from_arrays(
        [is_true if f.name == "collaborative" else items.field(f.name) for f in PLAYLISTS_SCHEMA],
        schema=PLAYLISTS_SCHEMA,
    )
    interactions = pa.Table.from_arrays(
        [pids.take(owner), *(flat.field(f.name) for f in _TRACK_FIELDS)],
        schema=INTERACTIONS_SCHEMA,
    )
    return MPDSlice(name, playlists, interactions)


def _first_null(array: pa.Array) -> int:
    return int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])


def _first_false(mask: pa.Array) -> int:
    return int(np.flatnonzero(~mask.to_numpy(zero_copy_only=False))[0])


def _check_unique_pids(playlists: pa.Table, parts: list[MPDSlice]) -> None:
    pids = playlists["pid"]
    if len(pc.unique(pids)) == len(pids):
        return
    counts = pc.value_counts(pids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    pid = repeated[0].as_py()
    files = [p.name for p in parts if pc.any(pc.equal(p.playlists["pid"], pid)).as_py()]
    raise ValueError(f"pid {pid} occurs more than once, in {files}")
