"""Amazon Reviews loaders on small files written in the published layouts.

Each fixture is a few lines in the 2018 or 2023 format (JSON lines or ratings CSV, plain and
gzip), and the expected rows are written out by hand from the documented mapping.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pyarrow as pa
import pytest

from torchrs_fn.data.datasets import amazon
from torchrs_fn.data.datasets.amazon import (
    MalformedLineError,
    SkippedLinesWarning,
    detect_format,
    k_core,
    load_metadata,
    load_reviews,
)

# Three 2018 reviews as the per-category files print them (keys in the published order).
LINES_2018 = [
    '{"overall": 5.0, "verified": true, "reviewTime": "09 4, 2015", "reviewerID": "ALJ66O1Y6SLHA",'
    ' "asin": "B000K2PJ4K", "style": {"Size:": " Big Boys", "Color:": " Blue/Orange"},'
    ' "reviewerName": "Tonya B.", "reviewText": "Great product and price!",'
    ' "summary": "Five Stars", "unixReviewTime": 1441324800}',
    '{"overall": 2.0, "vote": "1,234", "verified": false, "reviewTime": "02 12, 2013",'
    ' "reviewerID": "A2G04ZI9KQ4M0E", "asin": "B000K2PJ4K", "reviewerName": "Nora",'
    ' "reviewText": "Runs small, \\"snug\\" fit", "summary": "Meh", "unixReviewTime": 1360627200,'
    ' "image": ["https://images-na.ssl-images-amazon.com/images/I/71eG75FTJJL._SY88.jpg"]}',
    '{"overall": 4.0, "vote": "3", "verified": true, "reviewTime": "01 1, 2014",'
    ' "reviewerID": "ALJ66O1Y6SLHA", "asin": "B000XYZ123", "reviewerName": "Tonya B.",'
    ' "summary": "Nice", "unixReviewTime": 1388534400}',
]
ROWS_2018 = [
    {
        "user_id": "ALJ66O1Y6SLHA",
        "item_id": "B000K2PJ4K",
        "rating": 5.0,
        "timestamp": 1441324800,
        "asin": "B000K2PJ4K",
        "title": "Five Stars",
        "text": "Great product and price!",
        "verified": True,
        "helpful_votes": 0,
        "image_urls": None,
    },
    {
        "user_id": "A2G04ZI9KQ4M0E",
        "item_id": "B000K2PJ4K",
        "rating": 2.0,
        "timestamp": 1360627200,
        "asin": "B000K2PJ4K",
        "title": "Meh",
        "text": 'Runs small, "snug" fit',
        "verified": False,
        "helpful_votes": 1234,
        "image_urls": ["https://images-na.ssl-images-amazon.com/images/I/71eG75FTJJL._SY88.jpg"],
    },
    {
        "user_id": "ALJ66O1Y6SLHA",
        "item_id": "B000XYZ123",
        "rating": 4.0,
        "timestamp": 1388534400,
        "asin": "B000XYZ123",
        "title": "Nice",
        "text": None,
        "verified": True,
        "helpful_votes": 3,
        "image_urls": None,
    },
]

LINES_2023 = [
    '{"rating": 5.0, "title": "Such a lovely scent", "text": "This spray is really nice.",'
    ' "images": [], "asin": "B00YQ6X8EO", "parent_asin": "B00YQ6X8EO",'
    ' "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923,'
    ' "helpful_vote": 0, "verified_purchase": true}',
    '{"rating": 1.0, "title": "Broke", "text": "Stopped working after a week.",'
    ' "images": [{"small_image_url": "https://m.media-amazon.com/images/I/s1.jpg",'
    ' "medium_image_url": "https://m.media-amazon.com/images/I/m1.jpg",'
    ' "large_image_url": "https://m.media-amazon.com/images/I/l1.jpg",'
    ' "attachment_type": "IMAGE"}], "asin": "B081TJ8YS3", "parent_asin": "B08BBQ29N5",'
    ' "user_id": "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "timestamp": 1588615855999,'
    ' "helpful_vote": 12, "verified_purchase": false}',
]
ROWS_2023 = [
    {
        "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
        "item_id": "B00YQ6X8EO",
        "rating": 5.0,
        "timestamp": 1588687728,
        "asin": "B00YQ6X8EO",
        "title": "Such a lovely scent",
        "text": "This spray is really nice.",
        "verified": True,
        "helpful_votes": 0,
        "image_urls": [],
    },
    {
        "user_id": "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ",
        "item_id": "B08BBQ29N5",  # parent_asin, not asin
        "rating": 1.0,
        "timestamp": 1588615855,  # 1588615855999 ms floored to seconds
        "asin": "B081TJ8YS3",
        "title": "Broke",
        "text": "Stopped working after a week.",
        "verified": False,
        "helpful_votes": 12,
        "image_urls": ["https://m.media-amazon.com/images/I/l1.jpg"],
    },
]

CSV_2018 = "0001527665,A3AHVRM2VOJH8I,5.0,1361145600\n0001527665,A1XZ7N1DC8ERM4,4.0,1392076800\n"
ROWS_CSV_2018 = [
    {"user_id": "A3AHVRM2VOJH8I", "item_id": "0001527665", "rating": 5.0, "timestamp": 1361145600},
    {"user_id": "A1XZ7N1DC8ERM4", "item_id": "0001527665", "rating": 4.0, "timestamp": 1392076800},
]
CSV_2023 = (
    "user_id,parent_asin,rating,timestamp,history\n"
    "AFKZENTNBQ7A7V7UXW5JJI6UGRYQ,B07SRJW3HJ,5.0,1566351166431,\n"
    "AFKZENTNBQ7A7V7UXW5JJI6UGRYQ,B08T5ZF6SN,3.0,1601587315209,B07SRJW3HJ\n"
)
ROWS_CSV_2023 = [
    {
        "user_id": "AFKZENTNBQ7A7V7UXW5JJI6UGRYQ",
        "item_id": "B07SRJW3HJ",
        "rating": 5.0,
        "timestamp": 1566351166,
    },
    {
        "user_id": "AFKZENTNBQ7A7V7UXW5JJI6UGRYQ",
        "item_id": "B08T5ZF6SN",
        "rating": 3.0,
        "timestamp": 1601587315,
    },
]

META_LINES = [
    '{"main_category": "All Beauty", "title": "Howard LC0008 Leather Conditioner, 8-Ounce",'
    ' "average_rating": 4.8, "rating_number": 10, "features": [], "description": [],'
    ' "price": null, "images": [{"thumb": "https://t/1.jpg", "large": "https://l/1.jpg",'
    ' "variant": "MAIN", "hi_res": null}], "videos": [], "store": "Howard Products",'
    ' "categories": [], "details": {"Package Dimensions": "7.1 x 5.5 x 3 inches; 2.38 Pounds",'
    ' "UPC": "617390882781", "Best Sellers Rank": {"Beauty": 1234}},'
    ' "parent_asin": "B01CUPMQZE", "bought_together": null}',
    '{"main_category": "Books", "title": "A Book", "average_rating": 4.0, "rating_number": 2,'
    ' "features": ["Hardcover"], "description": ["First.", "Second."], "price": 12.5,'
    ' "images": [], "videos": [], "store": "Penguin",'
    ' "categories": ["Books", "Literature & Fiction"], "details": {}, "parent_asin": "0143127551",'
    ' "author": {"name": "Someone"}}',
]
ROWS_META = [
    {
        "item_id": "B01CUPMQZE",
        "title": "Howard LC0008 Leather Conditioner, 8-Ounce",
        "main_category": "All Beauty",
        "store": "Howard Products",
        "average_rating": pytest.approx(4.8),
        "rating_number": 10,
        "price": None,
        "features": [],
        "description": [],
        "categories": [],
        "image_urls": ["https://l/1.jpg"],
    },
    {
        "item_id": "0143127551",
        "title": "A Book",
        "main_category": "Books",
        "store": "Penguin",
        "average_rating": 4.0,
        "rating_number": 2,
        "price": 12.5,
        "features": ["Hardcover"],
        "description": ["First.", "Second."],
        "categories": ["Books", "Literature & Fiction"],
        "image_urls": [],
    },
]

STRING = pa.string()
RATINGS_FIELDS = [
    pa.field("user_id", STRING, nullable=False),
    pa.field("item_id", STRING, nullable=False),
    pa.field("rating", pa.float32(), nullable=False),
    pa.field("timestamp", pa.int64(), nullable=False),
]
EXPECTED_REVIEWS_SCHEMA = pa.schema(
    [
        *RATINGS_FIELDS,
        ("asin", STRING),
        ("title", STRING),
        ("text", STRING),
        ("verified", pa.bool_()),
        ("helpful_votes", pa.int64()),
        ("image_urls", pa.list_(STRING)),
    ]
)


def write(path: Path, lines: list[str] | str, *, gz: bool = False) -> Path:
    text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_2018_reviews_plain_and_gzip(tmp_path):
    plain = write(tmp_path / "Clothing.json", LINES_2018)
    table = load_reviews(plain)
    assert table.schema == EXPECTED_REVIEWS_SCHEMA == amazon.REVIEWS_SCHEMA
    assert table.to_pylist() == ROWS_2018
    assert detect_format(plain) == "2018"
    zipped = write(tmp_path / "Clothing.json.gz", LINES_2018, gz=True)
    assert load_reviews(zipped).equals(table)
    # gzip is recognised by its bytes, not its name
    assert load_reviews(write(tmp_path / "noext", LINES_2018, gz=True)).equals(table)


def test_2018_style_on_request(tmp_path):
    table = load_reviews(write(tmp_path / "r.json", LINES_2018), style=True)
    assert table.schema.field("style").type == pa.map_(STRING, STRING)
    assert table["style"].to_pylist() == [
        [("Size", "Big Boys"), ("Color", "Blue/Orange")],
        None,
        None,
    ]
    assert table.drop_columns(["style"]).to_pylist() == ROWS_2018
    with pytest.raises(ValueError, match="style=True needs the 2018"):
        load_reviews(write(tmp_path / "r23.jsonl", LINES_2023), style=True)


def test_2023_reviews(tmp_path):
    path = write(tmp_path / "All_Beauty.jsonl.gz", LINES_2023, gz=True)
    assert detect_format(path) == "2023"
    table = load_reviews(path)
    assert table.schema == EXPECTED_REVIEWS_SCHEMA
    assert table.to_pylist() == ROWS_2023
    # the same schema as 2018, so the releases concatenate
    both = pa.concat_tables([load_reviews(write(tmp_path / "a.json", LINES_2018)), table])
    assert both.num_rows == 5


def test_ratings_csv_layouts(tmp_path):
    path = write(tmp_path / "Books.csv", CSV_2018)
    assert detect_format(path) == "2018-ratings"
    table = load_reviews(path)
    assert table.schema == pa.schema(RATINGS_FIELDS) == amazon.RATINGS_SCHEMA
    assert table.to_pylist() == ROWS_CSV_2018
    path = write(tmp_path / "All_Beauty.train.csv.gz", CSV_2023, gz=True)
    assert detect_format(path) == "2023-ratings"
    assert load_reviews(path).to_pylist() == ROWS_CSV_2023


def test_format_argument_and_detection_errors(tmp_path):
    path = write(tmp_path / "r.json", LINES_2018)
    assert load_reviews(path, format="2018").to_pylist() == ROWS_2018
    with pytest.raises(ValueError, match="format='2019'"):
        load_reviews(path, format="2019")
    with pytest.raises(ValueError, match="2023 item metadata: read it with load_metadata"):
        load_reviews(write(tmp_path / "meta.jsonl", META_LINES))
    with pytest.raises(ValueError, match="2014"):
        load_reviews(write(tmp_path / "old.json", ["{'reviewerID': 'A', 'asin': 'B'}"]))
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_reviews(write(tmp_path / "x.txt", "hello world\n"))
    with pytest.raises(FileNotFoundError, match="amazon-reviews-2023.github.io"):
        load_reviews(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="on_bad_lines"):
        load_reviews(path, on_bad_lines="ignore")


@pytest.mark.parametrize("gz", [False, True])
def test_malformed_json_line_names_file_and_line(tmp_path, gz):
    lines = [LINES_2018[0], "", LINES_2018[1], '{"overall": 3.0, "reviewerID": "A3"', LINES_2018[2]]
    path = write(tmp_path / ("r.json.gz" if gz else "r.json"), lines, gz=gz)
    with pytest.raises(MalformedLineError) as info:
        load_reviews(path)
    assert info.value.line_number == 4  # physical line, counting the blank one
    assert info.value.path == str(path)
    assert f"{path}: line 4 is malformed" in str(info.value)


def test_missing_required_field_and_bad_types_are_malformed(tmp_path):
    no_asin = '{"overall": 3.0, "reviewerID": "A3", "unixReviewTime": 1}'
    with pytest.raises(MalformedLineError, match=r"line 2 .*'asin'"):
        load_reviews(write(tmp_path / "a.json", [LINES_2018[0], no_asin]), format="2018")
    bad_vote = LINES_2018[2].replace('"vote": "3"', '"vote": "many"')
    with pytest.raises(MalformedLineError, match="line 3"):
        load_reviews(write(tmp_path / "b.json", [*LINES_2018[:2], bad_vote]))
    bad_rating = LINES_2023[1].replace('"rating": 1.0', '"rating": "one"')
    with pytest.raises(MalformedLineError, match="line 2"):
        load_reviews(write(tmp_path / "c.jsonl", [LINES_2023[0], bad_rating]))
    short_row = CSV_2018 + "0001527665,A2,5.0\n"
    with pytest.raises(MalformedLineError, match="line 3"):
        load_reviews(write(tmp_path / "d.csv", short_row), format="2018-ratings")
    bad_number = CSV_2023.replace("3.0,1601587315209", "3.0,soon")
    with pytest.raises(MalformedLineError, match="line 3"):
        load_reviews(write(tmp_path / "e.csv", bad_number))


def test_skip_reports_the_skipped_lines(tmp_path):
    lines = [
        "not json",
        LINES_2018[0],
        LINES_2018[1],
        '{"overall": 3.0}',
        "",
        LINES_2018[2],
        "[1, 2]",
    ]
    path = write(tmp_path / "r.json.gz", lines, gz=True)
    with pytest.warns(SkippedLinesWarning) as record:
        table = load_reviews(path, on_bad_lines="skip", style=True)
    (warning,) = record
    assert warning.message.line_numbers == [1, 4, 7]
    assert "skipped 3 malformed line(s)" in str(warning.message)
    assert table.schema.metadata == {b"skipped_lines": b"3"}
    assert table.drop_columns(["style"]).to_pylist() == ROWS_2018
    assert table["style"][0].as_py() == [("Size", "Big Boys"), ("Color", "Blue/Orange")]

    csv = "x,y\n" + CSV_2018 + "0001527665,A2,five,1392076800\n"
    with pytest.warns(SkippedLinesWarning, match="skipped 2"):
        table = load_reviews(
            write(tmp_path / "r.csv", csv), format="2018-ratings", on_bad_lines="skip"
        )
    assert table.to_pylist() == ROWS_CSV_2018


def test_clean_file_emits_no_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_reviews(write(tmp_path / "r.json", LINES_2018), on_bad_lines="skip")
    assert table.schema.metadata is None


def test_line_aware_pass_across_many_blocks(tmp_path, monkeypatch):
    """Small blocks force the fallback to carry partial lines and to halve failing blocks."""
    monkeypatch.setattr(amazon, "_FALLBACK_BLOCK", 97)
    good = [
        f'{{"reviewerID": "U{i % 7}", "asin": "I{i % 5}", "overall": {1 + i % 5}.0, '
        f'"unixReviewTime": {1000 + i}}}'
        for i in range(60)
    ]
    bad_at = {3, 17, 18, 59}  # 0-based positions
    lines = ["{broken" if i in bad_at else line for i, line in enumerate(good)]
    path = write(tmp_path / "many.json", lines)
    with pytest.warns(SkippedLinesWarning) as record:
        table = load_reviews(path, format="2018", on_bad_lines="skip")
    assert record[0].message.line_numbers == [4, 18, 19, 60]
    kept = [i for i in range(60) if i not in bad_at]
    assert table["timestamp"].to_pylist() == [1000 + i for i in kept]
    assert table["user_id"].to_pylist() == [f"U{i % 7}" for i in kept]
    with pytest.raises(MalformedLineError, match="line 4 "):
        load_reviews(path, format="2018")


def test_truncated_gzip_is_an_error(tmp_path):
    whole = gzip.compress(("\n".join(LINES_2018 * 50) + "\n").encode())
    path = tmp_path / "r.json.gz"
    path.write_bytes(whole[: len(whole) - 20])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_reviews(path)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_reviews(path, on_bad_lines="skip")


def test_k_core_cascades_until_stable():
    table = pa.table(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u3", "u4"],
            "item_id": ["i1", "i2", "i1", "i2", "i1", "i3", "i3"],
            "n": list(range(7)),
        }
    )
    # k=2: u4 has one row -> i3 drops to one -> u3 drops to one -> stable.
    assert k_core(table, 2)["n"].to_pylist() == [0, 1, 2, 3]
    assert k_core(table, 1).equals(table)
    assert k_core(table, 3).num_rows == 0
    custom = table.rename_columns(["who", "what", "n"])
    assert k_core(custom, 2, user_column="who", item_column="what")["n"].to_pylist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="non-negative integer"):
        k_core(table, -1)


def test_load_reviews_k_core(tmp_path):
    again = LINES_2018[1].replace("A2G04ZI9KQ4M0E", "ALJ66O1Y6SLHA").replace("1360627200", "1")
    lines = [*LINES_2018, again]
    table = load_reviews(write(tmp_path / "r.json", lines), k_core=2)
    # ALJ66O1Y6SLHA has 3 rows, A2G04ZI9KQ4M0E 1; B000K2PJ4K 3, B000XYZ123 1.
    # Round 1 drops A2G04ZI9KQ4M0E's row and B000XYZ123's row; then everything left has >= 2.
    assert table["timestamp"].to_pylist() == [1441324800, 1]


def test_metadata(tmp_path):
    path = write(tmp_path / "meta_All_Beauty.jsonl.gz", META_LINES, gz=True)
    table = load_metadata(path)
    assert table.schema == amazon.METADATA_SCHEMA
    assert table.schema.field("price").type == pa.float64()
    assert table.to_pylist() == ROWS_META
    with_details = load_metadata(path, details=True)
    assert with_details["details"].to_pylist() == [
        [
            ("Package Dimensions", "7.1 x 5.5 x 3 inches; 2.38 Pounds"),
            ("UPC", "617390882781"),
            ("Best Sellers Rank", '{"Beauty": 1234}'),
        ],
        [],
    ]
    bad = write(tmp_path / "bad.jsonl", [META_LINES[0], META_LINES[1].replace("12.5", '"n/a"')])
    with pytest.raises(MalformedLineError, match="line 2"):
        load_metadata(bad)
    with pytest.warns(SkippedLinesWarning):
        assert load_metadata(bad, on_bad_lines="skip", details=True).num_rows == 1
