"""Spotify Million Playlist Dataset loader on small slice files in the published layout.

The fixtures are slice files as the MPD prints them (one pretty-printed JSON object with
``info`` and ``playlists``), and the expected rows are written out by hand.
"""

from __future__ import annotations

import copy
import gzip
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from torchrs_fn.data.datasets import spotify_mpd
from torchrs_fn.data.datasets.spotify_mpd import iter_slices, load, slice_names


def track(pos, name, artist, album, ms, t, a, b):
    return {
        "pos": pos,
        "artist_name": artist,
        "track_uri": f"spotify:track:{t}",
        "artist_uri": f"spotify:artist:{a}",
        "track_name": name,
        "album_uri": f"spotify:album:{b}",
        "duration_ms": ms,
        "album_name": album,
    }


SLICE_0 = {
    "info": {
        "generated_on": "2017-12-03 08:41:42.057563",
        "slice": "0-999",
        "version": "v1",
    },
    "playlists": [
        {
            "name": "Throwbacks",
            "collaborative": "false",
            "pid": 0,
            "modified_at": 1493424000,
            "num_tracks": 2,
            "num_albums": 2,
            "num_followers": 1,
            "tracks": [
                track(
                    0,
                    "Lose Control (feat. Ciara & Fat Man Scoop)",
                    "Missy Elliott",
                    "The Cookbook",
                    226863,
                    "0UaMYEvWZi0ZqiDOoHU3YI",
                    "2wIVse2owClT7go1WT98tk",
                    "6vV5UrXcfyQD1wu4Qo2I9K",
                ),
                track(
                    1,
                    "Toxic",
                    "Britney Spears",
                    "In The Zone",
                    198800,
                    "6I9VzXrHxO9rA9A5euc8Ak",
                    "26dSoYclwsYLMAKD3tpOr4",
                    "0z7pVBGOD7HCIB7S8eLkLI",
                ),
            ],
            "num_edits": 6,
            "duration_ms": 425663,
            "num_artists": 2,
        },
        {
            "name": "Régime, été",
            "collaborative": "true",
            "pid": 1,
            "modified_at": 1506556800,
            "num_tracks": 1,
            "num_albums": 1,
            "num_followers": 3,
            "tracks": [
                track(
                    0,
                    "Eyes Closed",
                    "Halsey",
                    "hopeless fountain kingdom",
                    202386,
                    "2ks1V3AVq6zoM8ol4dDEs5",
                    "26VFTg2z8YR0cCuwLzESi2",
                    "7qUzqcKBTQJpZoFmbNgOrM",
                ),
            ],
            "num_edits": 1,
            "duration_ms": 202386,
            "num_artists": 1,
            "description": 'songs for "summer"',
        },
    ],
}
SLICE_1000 = {
    "info": {"generated_on": "2017-12-03 08:41:42.057563", "slice": "1000-1999", "version": "v1"},
    "playlists": [
        {
            "name": "empty-ish",
            "collaborative": "false",
            "pid": 1000,
            "modified_at": 1400000000,
            "num_tracks": 1,
            "num_albums": 1,
            "num_followers": 1,
            "tracks": [
                track(
                    0,
                    "Toxic",
                    "Britney Spears",
                    "In The Zone",
                    198800,
                    "6I9VzXrHxO9rA9A5euc8Ak",
                    "26dSoYclwsYLMAKD3tpOr4",
                    "0z7pVBGOD7HCIB7S8eLkLI",
                ),
            ],
            "num_edits": 2,
            "duration_ms": 198800,
            "num_artists": 1,
        }
    ],
}

PLAYLISTS = [
    {
        "pid": 0,
        "name": "Throwbacks",
        "description": None,
        "collaborative": False,
        "modified_at": 1493424000,
        "num_tracks": 2,
        "num_albums": 2,
        "num_followers": 1,
        "num_edits": 6,
        "duration_ms": 425663,
        "num_artists": 2,
    },
    {
        "pid": 1,
        "name": "Régime, été",
        "description": 'songs for "summer"',
        "collaborative": True,
        "modified_at": 1506556800,
        "num_tracks": 1,
        "num_albums": 1,
        "num_followers": 3,
        "num_edits": 1,
        "duration_ms": 202386,
        "num_artists": 1,
    },
    {
        "pid": 1000,
        "name": "empty-ish",
        "description": None,
        "collaborative": False,
        "modified_at": 1400000000,
        "num_tracks": 1,
        "num_albums": 1,
        "num_followers": 1,
        "num_edits": 2,
        "duration_ms": 198800,
        "num_artists": 1,
    },
]
TOXIC = {
    "track_uri": "spotify:track:6I9VzXrHxO9rA9A5euc8Ak",
    "artist_uri": "spotify:artist:26dSoYclwsYLMAKD3tpOr4",
    "album_uri": "spotify:album:0z7pVBGOD7HCIB7S8eLkLI",
    "track_name": "Toxic",
    "artist_name": "Britney Spears",
    "album_name": "In The Zone",
    "duration_ms": 198800,
}
INTERACTIONS = [
    {
        "pid": 0,
        "pos": 0,
        "track_uri": "spotify:track:0UaMYEvWZi0ZqiDOoHU3YI",
        "artist_uri": "spotify:artist:2wIVse2owClT7go1WT98tk",
        "album_uri": "spotify:album:6vV5UrXcfyQD1wu4Qo2I9K",
        "track_name": "Lose Control (feat. Ciara & Fat Man Scoop)",
        "artist_name": "Missy Elliott",
        "album_name": "The Cookbook",
        "duration_ms": 226863,
    },
    {"pid": 0, "pos": 1, **TOXIC},
    {
        "pid": 1,
        "pos": 0,
        "track_uri": "spotify:track:2ks1V3AVq6zoM8ol4dDEs5",
        "artist_uri": "spotify:artist:26VFTg2z8YR0cCuwLzESi2",
        "album_uri": "spotify:album:7qUzqcKBTQJpZoFmbNgOrM",
        "track_name": "Eyes Closed",
        "artist_name": "Halsey",
        "album_name": "hopeless fountain kingdom",
        "duration_ms": 202386,
    },
    {"pid": 1000, "pos": 0, **TOXIC},
]

PLAYLISTS_SCHEMA = pa.schema(
    [
        ("pid", pa.int64()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("collaborative", pa.bool_()),
        ("modified_at", pa.int64()),
        ("num_tracks", pa.int64()),
        ("num_albums", pa.int64()),
        ("num_followers", pa.int64()),
        ("num_edits", pa.int64()),
        ("duration_ms", pa.int64()),
        ("num_artists", pa.int64()),
    ]
)
INTERACTIONS_SCHEMA = pa.schema(
    [
        ("pid", pa.int64()),
        ("pos", pa.int64()),
        *((name, pa.string()) for name in ("track_uri", "artist_uri", "album_uri")),
        *((name, pa.string()) for name in ("track_name", "artist_name", "album_name")),
        ("duration_ms", pa.int64()),
    ]
)


def write_slice(folder: Path, first: int, content: dict, *, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(content, indent=4, ensure_ascii=False).encode("utf-8")
    name = f"mpd.slice.{first}-{first + 999}.json"
    path = folder / (name + ".gz" if gz else name)
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def write_mpd(root: Path) -> Path:
    data = root / "data"
    write_slice(data, 1000, SLICE_1000)  # written first: order must come from the names
    write_slice(data, 0, SLICE_0)
    (data / "README.md").write_text("not a slice")
    return root


def test_load_folder(tmp_path):
    root = write_mpd(tmp_path / "mpd")
    for where in (root, root / "data"):
        playlists, interactions = load(where)
        assert playlists.schema == PLAYLISTS_SCHEMA == spotify_mpd.PLAYLISTS_SCHEMA
        assert interactions.schema == INTERACTIONS_SCHEMA == spotify_mpd.INTERACTIONS_SCHEMA
        assert playlists.to_pylist() == PLAYLISTS
        assert interactions.to_pylist() == INTERACTIONS
    assert [Path(n).name for n in slice_names(root)] == [
        "mpd.slice.0-999.json",
        "mpd.slice.1000-1999.json",
    ]
    single = load(root, workers=1)
    assert single.playlists.equals(playlists) and single.interactions.equals(interactions)


def test_numeric_slice_order(tmp_path):
    for first in (10000, 2000, 0):
        content = copy.deepcopy(SLICE_1000)
        content["playlists"][0]["pid"] = first
        write_slice(tmp_path, first, content)
    assert load(tmp_path).playlists["pid"].to_pylist() == [0, 2000, 10000]


def test_zip_single_file_and_gzip(tmp_path):
    root = write_mpd(tmp_path / "mpd")
    archive = tmp_path / "spotify_million_playlist_dataset.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((root / "data").iterdir(), reverse=True):
            zf.write(path, f"data/{path.name}")
    playlists, interactions = load(archive)
    assert playlists.to_pylist() == PLAYLISTS and interactions.to_pylist() == INTERACTIONS

    one = load(root / "data" / "mpd.slice.0-999.json")
    assert one.playlists.to_pylist() == PLAYLISTS[:2]
    assert one.interactions.to_pylist() == INTERACTIONS[:3]

    gz = write_slice(tmp_path / "gz", 0, SLICE_0, gz=True)
    assert load(gz).interactions.to_pylist() == INTERACTIONS[:3]
    assert load(tmp_path / "gz").playlists.to_pylist() == PLAYLISTS[:2]


def test_iter_slices_and_selection(tmp_path):
    root = write_mpd(tmp_path / "mpd")
    parts = list(iter_slices(root))
    assert [Path(p.name).name for p in parts] == [
        "mpd.slice.0-999.json",
        "mpd.slice.1000-1999.json",
    ]
    assert parts[0].playlists.to_pylist() == PLAYLISTS[:2]
    assert parts[1].interactions.to_pylist() == INTERACTIONS[3:]
    assert load(root, slices=1).playlists["pid"].to_pylist() == [0, 1]
    assert load(root, slices=[1]).playlists["pid"].to_pylist() == [1000]
    assert [p.playlists.num_rows for p in iter_slices(root, slices=[1, 0])] == [1, 2]
    with pytest.raises(ValueError, match="out of range"):
        load(root, slices=[5])
    with pytest.raises(ValueError, match="workers"):
        load(root, workers=0)


def _broken(tmp_path: Path, edit) -> Path:
    content = copy.deepcopy(SLICE_0)
    edit(content["playlists"])
    return write_slice(tmp_path, 0, content)


def test_num_tracks_mismatch_names_file_and_pid(tmp_path):
    path = _broken(tmp_path, lambda p: p[1].update(num_tracks=5))
    with pytest.raises(
        ValueError, match=r"mpd\.slice\.0-999\.json: playlist pid 1: num_tracks is 5 but it lists 1"
    ):
        load(tmp_path)
    assert path.is_file()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p[1].pop("name"), 'playlist pid 1 has no "name"'),
        (lambda p: p[0].pop("num_followers"), 'playlist pid 0 has no "num_followers"'),
        (
            lambda p: p[0]["tracks"][1].pop("track_uri"),
            'playlist pid 0: track at pos 1 has no "track_uri"',
        ),
        (
            lambda p: p[1].update(collaborative="maybe"),
            "playlist pid 1: \"collaborative\" is 'maybe'",
        ),
        (lambda p: p[1].pop("pid"), 'playlist #1 .* has no "pid"'),
        (lambda p: p[0].pop("tracks"), 'playlist pid 0 has no "tracks"'),
    ],
)
def test_missing_or_bad_fields_name_file_and_pid(tmp_path, edit, message):
    _broken(tmp_path, edit)
    with pytest.raises(ValueError, match=r"mpd\.slice\.0-999\.json: " + message):
        load(tmp_path)


def test_not_json_and_wrong_types(tmp_path):
    (tmp_path / "mpd.slice.0-999.json").write_text('{"info": {}, "playlists": [')
    with pytest.raises(ValueError, match=r"mpd\.slice\.0-999\.json is not an MPD slice"):
        load(tmp_path)
    _broken(tmp_path, lambda p: p[0].update(pid="zero"))
    with pytest.raises(ValueError, match="is not an MPD slice"):
        load(tmp_path)


def test_repeated_pid_across_slices(tmp_path):
    write_slice(tmp_path, 0, SLICE_0)
    again = copy.deepcopy(SLICE_1000)
    again["playlists"][0]["pid"] = 1
    write_slice(tmp_path, 1000, again)
    with pytest.raises(ValueError, match=r"pid 1 occurs more than once, in \[.*0-999.*1000-1999"):
        load(tmp_path)


def test_no_slices(tmp_path):
    with pytest.raises(FileNotFoundError, match="aicrowd"):
        load(tmp_path)
