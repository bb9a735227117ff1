"""Amazon Reviews (McAuley lab, 2018 and 2023 releases) as Arrow tables with one schema.

``reviews = load_reviews("Books.jsonl.gz")`` reads one category file as published, in any of four
layouts, which it recognises from the first line (or take ``format=``):

| ``format`` | file | fields used |
|---|---|---|
| ``"2018"`` | 2018 per-category reviews, JSON lines (``Books.json.gz``) | ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``, ``summary``, ``reviewText``, ``verified``, ``vote``, ``image`` (``style`` on request) |
| ``"2018-ratings"`` | 2018 ratings-only CSV, no header (``Books.csv``) | ``item,user,rating,timestamp`` |
| ``"2023"`` | 2023 reviews, JSON lines (``Books.jsonl.gz``) | ``user_id``, ``parent_asin``, ``asin``, ``rating``, ``timestamp``, ``title``, ``text``, ``helpful_vote``, ``verified_purchase``, ``images`` |
| ``"2023-ratings"`` | 2023 rating-only / benchmark CSV with a header | ``user_id,parent_asin,rating,timestamp`` (other columns ignored) |

Every format gives the four columns of ``RATINGS_SCHEMA``; the JSON formats add the review
fields of ``REVIEWS_SCHEMA``:

| column | Arrow type | 2018 | 2023 |
|---|---|---|---|
| ``user_id`` | ``string`` | ``reviewerID`` / CSV ``user`` | ``user_id`` |
| ``item_id`` | ``string`` | ``asin`` / CSV ``item`` | ``parent_asin``, as the official 2023 benchmarks use |
| ``rating`` | ``float32`` | ``overall`` | ``rating`` |
| ``timestamp`` | ``int64`` | ``unixReviewTime`` (seconds) | ``timestamp`` (milliseconds) floor-divided by 1000: seconds |
| ``asin`` | ``string`` | ``asin`` | ``asin`` (the variant reviewed) |
| ``title`` | ``string`` | ``summary`` | ``title`` |
| ``text`` | ``string`` | ``reviewText`` | ``text`` |
| ``verified`` | ``bool`` | ``verified`` | ``verified_purchase`` |
| ``helpful_votes`` | ``int64`` | ``vote`` ("1,234" -> 1234; absent, as the 2018 files leave it when nobody voted, -> 0) | ``helpful_vote`` |
| ``image_urls`` | ``list<string>`` | ``image`` | each image's ``large_image_url`` |

Rows keep file order; nothing is deduplicated (the 2018 files hold some exact duplicate
reviews). Optional text fields may be null; ``user_id``, ``item_id``, ``rating`` and
``timestamp`` may not (a line without them is malformed). Other fields (``reviewerName``,
``reviewTime``, image sizes) are not read. ``style=True`` adds ``style`` (``map<string, string>``,
2018's per-review product options, keys without their trailing ``:`` and values trimmed; null in
2023, which has no such field); it is decoded per line in Python, so it costs extra time.

``load_metadata("meta_Books.jsonl.gz")`` reads 2023 item metadata (``METADATA_SCHEMA``; see
``load_metadata``).

Files may be gzip-compressed (recognised by their magic bytes). A truncated or corrupt gzip is
an error, never a shorter table. Parsing is ``pyarrow.json`` / ``pyarrow.csv`` over the whole
file; only when that fails does a second, line-aware pass (still pyarrow, on blocks that it
halves down to the offending line) find which lines are malformed. A malformed line is one that
is not a JSON object / CSV row of the documented fields and types, or lacks a required field.
``on_bad_lines="error"`` (default) raises ``MalformedLineError`` naming the file and line;
``on_bad_lines="skip"`` drops such lines, emits one ``SkippedLinesWarning`` listing them, and
records their count in the table's schema metadata under ``b"skipped_lines"``.

``k_core=k`` (or ``k_core(table, k)``) keeps the k-core: it drops users and items with fewer
than ``k`` rows, repeatedly, until every remaining user and item has at least ``k``.

These files are not downloaded: their hosts ask for a form or change URLs, so pass the path of
a file you have (see https://amazon-reviews-2023.github.io and
https://nijianmo.github.io/amazon/).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from ._files import is_gzip, open_input

__all__ = [
    "FORMATS",
    "METADATA_SCHEMA",
    "RATINGS_SCHEMA",
    "REVIEWS_SCHEMA",
    "MalformedLineError",
    "SkippedLinesWarning",
    "detect_format",
    "k_core",
    "load_metadata",
    "load_reviews",
]

#: The layouts ``load_reviews`` reads.
FORMATS = ("2018", "2018-ratings", "2023", "2023-ratings")

_STRING, _INT64, _F32, _F64 = pa.string(), pa.int64(), pa.float32(), pa.float64()

#: Columns of every format (the CSV formats have only these).
RATINGS_SCHEMA = pa.schema(
    [
        pa.field("user_id", _STRING, nullable=False),
        pa.field("item_id", _STRING, nullable=False),
        pa.field("rating", _F32, nullable=False),
        pa.field("timestamp", _INT64, nullable=False),
    ]
)
#: Columns of the JSON formats ("2018", "2023"); ``style=True`` appends ``style``.
REVIEWS_SCHEMA = pa.schema(
    [
        *RATINGS_SCHEMA,
        ("asin", _STRING),
        ("title", _STRING),
        ("text", _STRING),
        ("verified", pa.bool_()),
        ("helpful_votes", _INT64),
        ("image_urls", pa.list_(_STRING)),
    ]
)
_STYLE_FIELD = pa.field("style", pa.map_(_STRING, _STRING))
_DETAILS_FIELD = pa.field("details", pa.map_(_STRING, _STRING))

#: Columns of ``load_metadata``; ``details=True`` appends ``details``.
METADATA_SCHEMA = pa.schema(
    [
        pa.field("item_id", _STRING, nullable=False),
        ("title", _STRING),
        ("main_category", _STRING),
        ("store", _STRING),
        ("average_rating", _F32),
        ("rating_number", _INT64),
        ("price", _F64),
        ("features", pa.list_(_STRING)),
        ("description", pa.list_(_STRING)),
        ("categories", pa.list_(_STRING)),
        ("image_urls", pa.list_(_STRING)),
    ]
)

# What the parser reads from each JSON layout (everything else on the line is ignored).
_RAW_2018 = pa.schema(
    [
        ("reviewerID", _STRING),
        ("asin", _STRING),
        ("overall", _F64),
        ("unixReviewTime", _INT64),
        ("summary", _STRING),
        ("reviewText", _STRING),
        ("verified", pa.bool_()),
        ("vote", _STRING),
        ("image", pa.list_(_STRING)),
    ]
)
_IMAGE_2023 = pa.struct(
    [
        ("small_image_url", _STRING),
        ("medium_image_url", _STRING),
        ("large_image_url", _STRING),
        ("attachment_type", _STRING),
    ]
)
_RAW_2023 = pa.schema(
    [
        ("user_id", _STRING),
        ("parent_asin", _STRING),
        ("asin", _STRING),
        ("rating", _F64),
        ("timestamp", _INT64),
        ("title", _STRING),
        ("text", _STRING),
        ("helpful_vote", _INT64),
        ("verified_purchase", pa.bool_()),
        ("images", pa.list_(_IMAGE_2023)),
    ]
)
_RAW_META = pa.schema(
    [
        ("parent_asin", _STRING),
        ("title", _STRING),
        ("main_category", _STRING),
        ("store", _STRING),
        ("average_rating", _F64),
        ("rating_number", _INT64),
        ("price", _F64),
        ("features", pa.list_(_STRING)),
        ("description", pa.list_(_STRING)),
        ("categories", pa.list_(_STRING)),
        (
            "images",
            pa.list_(
                pa.struct(
                    [
                        ("thumb", _STRING),
                        ("large", _STRING),
                        ("variant", _STRING),
                        ("hi_res", _STRING),
                    ]
                )
            ),
        ),
    ]
)
_CSV_2018_COLUMNS = ("item", "user", "rating", "timestamp")
_CSV_2023_COLUMNS = ("user_id", "parent_asin", "rating", "timestamp")

# Size of the blocks the line-aware pass hands to pyarrow before halving a failing one.
_FALLBACK_BLOCK = 8 << 20


class MalformedLineError(ValueError):
    """A line of ``path`` is not a record of the expected layout (``line_number`` is 1-based)."""

    def __init__(self, path: str, line_number: int, reason: str):
        super().__init__(f"{path}: line {line_number} is malformed: {reason}")
        self.path = path
        self.line_number = line_number
        self.reason = reason


class SkippedLinesWarning(UserWarning):
    """``on_bad_lines="skip"`` dropped lines; ``line_numbers`` lists them (1-based)."""

    def __init__(self, path: str, line_numbers: list[int], reasons: list[str]):
        shown = ", ".join(f"{n} ({r[:80]})" for n, r in zip(line_numbers[:5], reasons[:5]))
        more = f" and {len(line_numbers) - 5} more" if len(line_numbers) > 5 else ""
        super().__init__(f"{path}: skipped {len(line_numbers)} malformed line(s): {shown}{more}")
        self.path = path
        self.line_numbers = line_numbers
        self.reasons = reasons


class _Invalid(ValueError):
    """A block parsed but broke a rule of the schema (e.g. a required field is missing)."""


# -- public API ----------------------------------------------------------------------------------


def load_reviews(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    k_core: int | None = None,
    on_bad_lines: str = "error",
    style: bool = False,
) -> pa.Table:
    """Reads one Amazon Reviews file (2018 or 2023, JSON lines or ratings CSV) as one schema.

    Args:
        path: the file as published, gzip-compressed or not (``Books.json.gz``,
            ``Books.csv``, ``Books.jsonl.gz``, ``Books.csv`` of the 2023 benchmark...).
        format: ``"2018"``, ``"2018-ratings"``, ``"2023"`` or ``"2023-ratings"``; None detects it
            from the first line that parses (``detect_format``).
        k_core: if given, keep only the k-core (see ``k_core``), computed after bad lines are
            dropped.
        on_bad_lines: ``"error"`` raises ``MalformedLineError`` at the first malformed line;
            ``"skip"`` drops them with a ``SkippedLinesWarning`` and records their count in the
            schema metadata (``table.schema.metadata[b"skipped_lines"]``).
        style: 2018 JSON only: also decode each review's ``style`` object into a
            ``map<string, string>`` column (per-line Python, slower).

    Returns:
        A table with ``REVIEWS_SCHEMA`` (JSON formats, plus ``style`` when asked) or
        ``RATINGS_SCHEMA`` (CSV formats), rows in file order; see the module docstring for
        where each column comes from.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        MalformedLineError: a malformed line, with ``on_bad_lines="error"``.
        ValueError: unknown or undetectable format, a truncated or corrupt gzip, bad arguments.
    """
    path = _existing(path)
    _check_on_bad_lines(on_bad_lines)
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}")
    if style and format != "2018":
        raise ValueError(f"style=True needs the 2018 JSON reviews; {path} is format {format!r}")

    if format in ("2018", "2023"):
        raw = _RAW_2018 if format == "2018" else _RAW_2023
        normalise = _normalise_2018 if format == "2018" else _normalise_2023
        parse = _json_parser(raw, normalise)
        table, bad = _read_records(path, parse, on_bad_lines=on_bad_lines)
    else:
        header = _csv_header(path) if format == "2023-ratings" else None
        parse = _csv_parser(format, header)
        table, bad = _read_records(
            path, parse, on_bad_lines=on_bad_lines, header=header is not None
        )
    if style:
        table = table.append_column(
            _STYLE_FIELD, _object_as_map(path, "style", {n for n, _ in bad}, table.num_rows)
        )
    if k_core is not None:
        table = _k_core(table, k_core)
    return _report_skipped(table, path, bad)


def load_metadata(
    path: str | os.PathLike[str], *, on_bad_lines: str = "error", details: bool = False
) -> pa.Table:
    """Reads 2023 item metadata (``meta_<Category>.jsonl[.gz]``) as ``METADATA_SCHEMA``.

    | column | Arrow type | from |
    |---|---|---|
    | ``item_id`` | ``string`` | ``parent_asin`` (joins ``load_reviews``'s ``item_id``) |
    | ``title`` | ``string`` | ``title`` |
    | ``main_category`` | ``string`` | ``main_category`` |
    | ``store`` | ``string`` | ``store`` |
    | ``average_rating`` | ``float32`` | ``average_rating`` |
    | ``rating_number`` | ``int64`` | ``rating_number`` (number of ratings) |
    | ``price`` | ``float64`` | ``price`` (null when absent; a non-number makes the line malformed) |
    | ``features`` | ``list<string>`` | ``features`` (bullet points) |
    | ``description`` | ``list<string>`` | ``description`` (paragraphs) |
    | ``categories`` | ``list<string>`` | ``categories`` (path from the root category) |
    | ``image_urls`` | ``list<string>`` | each image's ``large`` URL |
    | ``details`` | ``map<string, string>`` | only with ``details=True``: ``details``, string values as they are, other values as JSON text |

    ``videos``, ``bought_together``, ``subtitle`` and ``author`` are not read. Bad lines,
    gzip and errors behave as in ``load_reviews``. ``details`` is free-form (its keys and value
    types vary between items), so it is decoded per line in Python, which costs extra time.
    """
    path = _existing(path)
    _check_on_bad_lines(on_bad_lines)
    table, bad = _read_records(
        path, _json_parser(_RAW_META, _normalise_meta), on_bad_lines=on_bad_lines
    )
    if details:
        table = table.append_column(
            _DETAILS_FIELD, _object_as_map(path, "details", {n for n, _ in bad}, table.num_rows)
        )
    return _report_skipped(table, path, bad)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The ``load_reviews`` format of ``path``, from the first of its first 50 lines that parses.

    JSON objects with ``reviewerID`` are "2018", with ``user_id`` and ``parent_asin`` "2023"; a
    CSV header with ``user_id`` and ``parent_asin`` is "2023-ratings"; four comma-separated fields
    ending in two numbers are "2018-ratings". Raises ``ValueError`` otherwise (2023 item
    metadata and the 2014 release's Python-literal lines get a message of their own).
    """
    path = _existing(path)
    for number, line in enumerate(_head_lines(path, 50), start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("{'"):
            raise ValueError(
                f"{path}: line {number} is a Python literal, the layout of the 2014 Amazon "
                "release, which load_reviews does not read (the 2018 and 2023 releases are JSON)"
            )
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                continue  # a malformed line; let the next one decide
            if not isinstance(record, dict):
                continue
            if "reviewerID" in record:
                return "2018"
            if "user_id" in record and "parent_asin" in record:
                return "2023"
            if "parent_asin" in record and "main_category" in record:
                raise ValueError(f"{path} holds 2023 item metadata: read it with load_metadata")
            raise ValueError(
                f"{path}: JSON records with keys {sorted(record)[:12]} are not reviews"
            )
        fields = [f.strip().strip('"') for f in text.split(",")]
        if "user_id" in fields and "parent_asin" in fields:
            return "2023-ratings"
        if len(fields) == 4 and _is_number(fields[2]) and _is_number(fields[3]):
            return "2018-ratings"
        # anything else is a malformed line; let the next one decide
    raise ValueError(
        f"cannot tell the format of {path} from its first lines; pass format= (one of {FORMATS})"
    )


def k_core(
    table: pa.Table, k: int, *, user_column: str = "user_id", item_column: str = "item_id"
) -> pa.Table:
    """The k-core of an interaction table: rows whose user and item both keep >= ``k`` rows.

    Users and items with fewer than ``k`` rows are dropped, which can push others below ``k``,
    so this repeats until nothing changes. Every row counts (repeated user-item pairs count
    more than once). Row order is kept. Vectorised: ids are dictionary-encoded once and each
    round is two ``numpy.bincount``. ``k <= 1`` returns the table unchanged.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    for column in (user_column, item_column):
        if column not in table.column_names:
            raise KeyError(f"k_core: no column {column!r}; columns: {table.column_names}")
        if table[column].null_count:
            raise ValueError(f"k_core: column {column!r} has nulls")
    if k <= 1 or table.num_rows == 0:
        return table
    users = _codes(table[user_column])
    items = _codes(table[item_column])
    keep = np.ones(table.num_rows, dtype=bool)
    while True:
        user_counts = np.bincount(users, weights=keep, minlength=users.max() + 1)
        item_counts = np.bincount(items, weights=keep, minlength=items.max() + 1)
        new_keep = keep & (user_counts[users] >= k) & (item_counts[items] >= k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    return table.filter(pa.array(keep))


_k_core = k_core  # load_reviews's argument of the same name hides the function there


# -- reading: fast path, then line-aware fallback ------------------------------------------------

_Parse = Callable[[pa.NativeFile | pa.Buffer, bool], pa.Table]


def _read_records(
    path: Path, parse: _Parse, *, on_bad_lines: str, header: bool = False
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Whole-file parse; on failure, a block-wise pass that isolates the malformed lines."""
    try:
        with open_input(path) as stream:
            return parse(stream, header), []
    except OSError as e:
        raise _corrupt(path, e) from e
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, _Invalid):
        pass  # find the line(s)
    bad: list[tuple[int, str]] = []
    tables: list[pa.Table] = []
    line = 1
    try:
        with open_input(path) as stream:
            for block in _blocks(stream):
                if header and line == 1:
                    cut = block.find(b"\n") + 1 if b"\n" in block else len(block)
                    block, line = block[cut:], 2
                _parse_lines(path, block, line, parse, on_bad_lines, tables, bad)
                line += block.count(b"\n")
    except OSError as e:
        raise _corrupt(path, e) from e
    if tables:
        return pa.concat_tables(tables), bad
    return parse(pa.py_buffer(b""), False), bad


def _blocks(stream: pa.NativeFile):
    """Decompressed bytes in blocks of whole lines (the last one may lack its newline)."""
    carry = b""
    while True:
        chunk = stream.read(_FALLBACK_BLOCK)
        if not chunk:
            if carry:
                yield carry
            return
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        carry = data[cut:]
        yield data[:cut]


def _parse_lines(
    path: Path,
    data: bytes,
    first_line: int,
    parse: _Parse,
    on_bad_lines: str,
    tables: list[pa.Table],
    bad: list[tuple[int, str]],
) -> None:
    """Parses ``data``; if that fails, halves it at a newline until the bad lines are alone."""
    if not data.strip():
        return
    try:
        tables.append(parse(pa.py_buffer(data), False))
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, _Invalid) as e:
        error = e
    body = data[:-1] if data.endswith(b"\n") else data
    if b"\n" not in body:  # one line
        reason = re.sub(r"\s+in row \d+$", "", str(error).strip())  # pyarrow's row in the block
        if on_bad_lines == "error":
            raise MalformedLineError(str(path), first_line, reason) from error
        bad.append((first_line, reason))
        return
    middle = body.find(b"\n", len(body) // 2)
    if middle < 0:
        middle = body.rfind(b"\n")
    left, right = data[: middle + 1], data[middle + 1 :]
    _parse_lines(path, left, first_line, parse, on_bad_lines, tables, bad)
    _parse_lines(path, right, first_line + left.count(b"\n"), parse, on_bad_lines, tables, bad)


def _json_parser(raw: pa.Schema, normalise: Callable[[pa.Table], pa.Table]) -> _Parse:
    options = pajson.ParseOptions(explicit_schema=raw, unexpected_field_behavior="ignore")

    def parse(source: pa.NativeFile | pa.Buffer, header: bool) -> pa.Table:
        if isinstance(source, pa.Buffer) and not source.size:
            return normalise(raw.empty_table())
        data = pa.BufferReader(source) if isinstance(source, pa.Buffer) else source
        return normalise(pajson.read_json(data, parse_options=options))

    return parse


def _csv_parser(format: str, header: list[str] | None) -> _Parse:
    if format == "2018-ratings":
        names = list(_CSV_2018_COLUMNS)
        user, item, scale = "user", "item", 1
    else:
        assert header is not None
        names = header
        user, item, scale = "user_id", "parent_asin", 1000
    types = {user: _STRING, item: _STRING, "rating": _F64, "timestamp": _INT64}
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=[user, item, "rating", "timestamp"],
        strings_can_be_null=False,
    )

    def parse(source: pa.NativeFile | pa.Buffer, header: bool) -> pa.Table:
        if isinstance(source, pa.Buffer):
            if not source.size:
                return RATINGS_SCHEMA.empty_table()
            source = pa.BufferReader(source)
        raw = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0),
            convert_options=convert,
        )
        _require(raw, [user, item, "rating", "timestamp"])
        return pa.Table.from_arrays(
            [
                raw[user],
                raw[item],
                pc.cast(raw["rating"], _F32),
                _floor_divide(raw["timestamp"], scale),
            ],
            schema=RATINGS_SCHEMA,
        )

    return parse


# -- normalising each layout ---------------------------------------------------------------------


def _normalise_2018(raw: pa.Table) -> pa.Table:
    _require(raw, ["reviewerID", "asin", "overall", "unixReviewTime"])
    vote = pc.replace_substring(pc.fill_null(raw["vote"], "0"), ",", "")
    return pa.Table.from_arrays(
        [
            raw["reviewerID"],
            raw["asin"],
            pc.cast(raw["overall"], _F32),
            raw["unixReviewTime"],
            raw["asin"],
            raw["summary"],
            raw["reviewText"],
            raw["verified"],
            pc.cast(vote, _INT64),  # ArrowInvalid on a vote that is not a number
            raw["image"],
        ],
        schema=REVIEWS_SCHEMA,
    )


def _normalise_2023(raw: pa.Table) -> pa.Table:
    _require(raw, ["user_id", "parent_asin", "rating", "timestamp"])
    return pa.Table.from_arrays(
        [
            raw["user_id"],
            raw["parent_asin"],
            pc.cast(raw["rating"], _F32),
            _floor_divide(raw["timestamp"], 1000),
            raw["asin"],
            raw["title"],
            raw["text"],
            raw["verified_purchase"],
            raw["helpful_vote"],
            _list_field(raw["images"], "large_image_url"),
        ],
        schema=REVIEWS_SCHEMA,
    )


def _normalise_meta(raw: pa.Table) -> pa.Table:
    _require(raw, ["parent_asin"])
    return pa.Table.from_arrays(
        [
            raw["parent_asin"],
            raw["title"],
            raw["main_category"],
            raw["store"],
            pc.cast(raw["average_rating"], _F32),
            raw["rating_number"],
            raw["price"],
            raw["features"],
            raw["description"],
            raw["categories"],
            _list_field(raw["images"], "large"),
        ],
        schema=METADATA_SCHEMA,
    )


def _require(raw: pa.Table, columns: list[str]) -> None:
    for column in columns:
        if raw[column].null_count:
            raise _Invalid(f"required field {column!r} is missing or null")


def _floor_divide(values: pa.ChunkedArray, by: int) -> pa.Array:
    array = values.to_numpy()
    return pa.array(array if by == 1 else np.floor_divide(array, by), type=_INT64)


def _list_field(lists: pa.ChunkedArray, field: str) -> pa.Array:
    """``list<struct>`` -> ``list<string>`` of one field of each struct, nulls kept."""
    lists = lists.combine_chunks()
    if isinstance(lists, pa.ChunkedArray):  # pyarrow < 17 returns a ChunkedArray
        lists = pa.concat_arrays(lists.chunks)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pc.struct_field(pc.list_flatten(lists), field)
    return pa.ListArray.from_arrays(
        pa.array(offsets), values, mask=pc.is_null(lists) if lists.null_count else None
    )


# -- free-form objects (style, details), decoded per line ----------------------------------------


def _object_as_map(path: Path, field: str, skipped: set[int], rows: int) -> pa.Array:
    """``field`` of each kept line's JSON object as ``map<string, string>`` (per-line Python)."""
    offsets = [0]
    keys: list[str] = []
    values: list[str] = []
    valid: list[bool] = []
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if number in skipped or not line.strip():
                continue
            obj = json.loads(line).get(field)
            if isinstance(obj, dict):
                for key, value in obj.items():
                    if field == "style":
                        key, value = key.rstrip(":").strip(), str(value).strip()
                    elif not isinstance(value, str):
                        value = json.dumps(value, ensure_ascii=False)
                    keys.append(key)
                    values.append(value)
            valid.append(isinstance(obj, dict))
            offsets.append(len(keys))
    if len(valid) != rows:
        raise ValueError(f"{path}: {field} decoded for {len(valid)} lines, expected {rows}")
    return pa.MapArray.from_arrays(
        pa.array(offsets, type=pa.int32()),
        pa.array(keys, type=_STRING),
        pa.array(values, type=_STRING),
        mask=pa.array(np.logical_not(np.array(valid, dtype=bool))),
    )


# -- small helpers -------------------------------------------------------------------------------


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist. Amazon Reviews files are not downloaded automatically: get "
            "the category file from https://amazon-reviews-2023.github.io (2023) or "
            "https://nijianmo.github.io/amazon/ (2018) and pass its path."
        )
    return path


def _check_on_bad_lines(on_bad_lines: str) -> None:
    if on_bad_lines not in ("error", "skip"):
        raise ValueError(f"on_bad_lines must be 'error' or 'skip', got {on_bad_lines!r}")


def _corrupt(path: Path, e: OSError) -> ValueError:
    return ValueError(
        f"{path} could not be read to the end ({e}): it is truncated or corrupt (a gzip "
        "that ends early, or damaged bytes). Download it again."
    )


def _head_lines(path: Path, count: int) -> list[str]:
    opener = gzip.open if is_gzip(path) else open
    lines = []
    try:
        with opener(path, "rb") as f:
            for line in f:
                lines.append(line.decode("utf-8", errors="replace"))
                if len(lines) == count:
                    break
    except (OSError, EOFError) as e:
        if not lines:
            raise ValueError(f"{path} is not readable: {e}") from e
    return lines


def _csv_header(path: Path) -> list[str]:
    for line in _head_lines(path, 1):
        return [name.strip().strip('"') for name in line.strip().split(",")]
    raise ValueError(f"{path} is empty")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column.combine_chunks())
    return encoded.indices.to_numpy()


def _report_skipped(table: pa.Table, path: Path, bad: list[tuple[int, str]]) -> pa.Table:
    if not bad:
        return table
    numbers = [n for n, _ in bad]
    warnings.warn(SkippedLinesWarning(str(path), numbers, [r for _, r in bad]), stacklevel=3)
    metadata = dict(table.schema.metadata or {})
    metadata[b"skipped_lines"] = str(len(numbers)).encode()
    return table.replace_schema_metadata(metadata)
