"""MovieLens 1m / 20m / 25m / latest-small from small files in GroupLens's own layouts.

Each test writes a few lines in the published format (``::``-separated latin-1 ``.dat`` files for
1m; quoted UTF-8 CSV with a header for the others), as a folder and as a zip, and compares the
tables with rows written out by hand from TFDS's parsing rules.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from torchrs_fn.data.datasets import DatasetNotFoundError, movielens
from torchrs_fn.data.datasets.movielens import load

MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Misérables, Les (1995)::Drama|Musical\n"
    "3::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi\n"
)
USERS_DAT = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::4::55117-1234\n"
RATINGS_DAT = "1::1::5::978300760\n2::2::3::978298413\n3::1::4::978297867\n1::3::4::978824291\n"

MOVIES_CSV = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    '2253,"""Great Performances"" Cats (1998)",Musical\n'
    "3000,Pokémon Heroes (2003),(no genres listed)\n"
    "193609,Planet Earth (2006),Documentary|IMAX\n"
)
RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,11,3.5,964981247\n"
    "2,2253,0.5,1445714835\n"
    "610,3000,5.0,1493845360\n"
    "610,1,3.0,1493845361\n"
)

# Genre ids: Action 0, Adventure 1, Animation 2, Children 3, Comedy 4, Documentary 6, Drama 7,
# Fantasy 8, IMAX 11, Musical 12, Romance 14, Sci-Fi 15, (no genres listed) 20.
MOVIES_1M = [
    {"movie_id": "1", "movie_title": "Toy Story (1995)", "movie_genres": [2, 3, 4]},
    {"movie_id": "2", "movie_title": "Misérables, Les (1995)", "movie_genres": [7, 12]},
    {
        "movie_id": "3",
        "movie_title": "Star Wars: Episode IV - A New Hope (1977)",
        "movie_genres": [0, 1, 8, 15],
    },
]
USER_1 = {
    "bucketized_user_age": 1.0,
    "user_gender": False,
    "user_occupation_label": 17,  # code 10 "K-12 student" -> "student"
    "user_occupation_text": "K-12 student",
    "user_zip_code": "48067",
}
USER_2 = {
    "bucketized_user_age": 56.0,
    "user_gender": True,
    "user_occupation_label": 16,  # code 16 "self-employed"
    "user_occupation_text": "self-employed",
    "user_zip_code": "70072",
}
USER_3 = {
    "bucketized_user_age": 25.0,
    "user_gender": True,
    "user_occupation_label": 17,  # code 4 "college/grad student" -> "student"
    "user_occupation_text": "college/grad student",
    "user_zip_code": "55117-1234",
}


def _rating(user, movie, rating, timestamp, movies, extra=None):
    m = next(m for m in movies if m["movie_id"] == movie)
    row = {"user_id": user, **m, "user_rating": rating, "timestamp": timestamp}
    return {**row, **(extra or {})}


RATINGS_1M = [
    _rating("1", "1", 5.0, 978300760, MOVIES_1M, USER_1),
    _rating("2", "2", 3.0, 978298413, MOVIES_1M, USER_2),
    _rating("3", "1", 4.0, 978297867, MOVIES_1M, USER_3),
    _rating("1", "3", 4.0, 978824291, MOVIES_1M, USER_1),
]

MOVIES_CSV_ROWS = [
    {"movie_id": "1", "movie_title": "Toy Story (1995)", "movie_genres": [1, 2, 3, 4, 8]},
    {
        "movie_id": "11",
        "movie_title": "American President, The (1995)",
        "movie_genres": [4, 7, 14],
    },
    {"movie_id": "2253", "movie_title": '"Great Performances" Cats (1998)', "movie_genres": [12]},
    {"movie_id": "3000", "movie_title": "Pokémon Heroes (2003)", "movie_genres": [20]},
    {"movie_id": "193609", "movie_title": "Planet Earth (2006)", "movie_genres": [6, 11]},
]
RATINGS_CSV_ROWS = [
    _rating("1", "1", 4.0, 964982703, MOVIES_CSV_ROWS),
    _rating("1", "11", 3.5, 964981247, MOVIES_CSV_ROWS),
    _rating("2", "2253", 0.5, 1445714835, MOVIES_CSV_ROWS),
    _rating("610", "3000", 5.0, 1493845360, MOVIES_CSV_ROWS),
    _rating("610", "1", 3.0, 1493845361, MOVIES_CSV_ROWS),
]

STRING, INT64, F32 = pa.string(), pa.int64(), pa.float32()
BASE_FIELDS = [
    ("user_id", STRING),
    ("movie_id", STRING),
    ("movie_title", STRING),
    ("movie_genres", pa.list_(INT64)),
    ("user_rating", F32),
    ("timestamp", INT64),
]
SCHEMA_1M = pa.schema(
    [
        *BASE_FIELDS,
        ("bucketized_user_age", F32),
        ("user_gender", pa.bool_()),
        ("user_occupation_label", INT64),
        ("user_occupation_text", STRING),
        ("user_zip_code", STRING),
    ]
)
SCHEMA_CSV = pa.schema(BASE_FIELDS)
MOVIES_SCHEMA = pa.schema(
    [("movie_id", STRING), ("movie_title", STRING), ("movie_genres", pa.list_(INT64))]
)


def write_1m(folder: Path, *, ratings: str = RATINGS_DAT, newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("movies.dat", MOVIES_DAT), ("users.dat", USERS_DAT)):
        (folder / name).write_bytes(text.replace("\n", newline).encode("latin-1"))
    (folder / "ratings.dat").write_bytes(ratings.replace("\n", newline).encode("latin-1"))
    return folder


def write_csv(folder: Path, *, movies: str = MOVIES_CSV, ratings: str = RATINGS_CSV) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_text(movies, encoding="utf-8")
    (folder / "ratings.csv").write_text(ratings, encoding="utf-8")
    return folder


def make_zip(folder: Path, dest: Path, variant: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"ml-{variant}/", "")
        for path in sorted(folder.iterdir()):
            zf.write(path, f"ml-{variant}/{path.name}")
        zf.writestr(f"ml-{variant}/README", "extra member the loader ignores")
    return dest


def test_1m_from_folder_and_zip(tmp_path):
    folder = write_1m(tmp_path / "ml-1m")
    ratings, movies = load("1m", data_dir=folder)
    assert ratings.schema == SCHEMA_1M == movielens.RATINGS_SCHEMAS["1m"]
    assert movies.schema == MOVIES_SCHEMA
    assert movies.to_pylist() == MOVIES_1M
    assert ratings.to_pylist() == RATINGS_1M

    zipped = make_zip(folder, tmp_path / "elsewhere" / "ml-1m.zip", "1m")
    from_zip = load("1m", data_dir=zipped)
    assert from_zip.ratings.equals(ratings) and from_zip.movies.equals(movies)
    from_parent = load("1m", data_dir=zipped.parent)  # a folder holding ml-1m.zip
    assert from_parent.ratings.equals(ratings)
    assert load("1m", data_dir=tmp_path).ratings.equals(ratings)  # a folder holding ml-1m/


def test_1m_windows_line_endings_and_no_final_newline(tmp_path):
    folder = write_1m(tmp_path / "crlf", ratings=RATINGS_DAT.rstrip("\n"), newline="\r\n")
    ratings, movies = load("1m", data_dir=folder)
    assert movies.to_pylist() == MOVIES_1M
    assert ratings.to_pylist() == RATINGS_1M


@pytest.mark.parametrize("variant", ["20m", "25m", "latest-small"])
def test_csv_variants_from_folder_and_zip(tmp_path, variant):
    folder = write_csv(tmp_path / f"ml-{variant}")
    ratings, movies = load(variant, data_dir=folder)
    assert ratings.schema == SCHEMA_CSV == movielens.RATINGS_SCHEMAS[variant]
    assert movies.schema == MOVIES_SCHEMA
    assert movies.to_pylist() == MOVIES_CSV_ROWS
    assert ratings.to_pylist() == RATINGS_CSV_ROWS

    zipped = make_zip(folder, tmp_path / f"ml-{variant}.zip", variant)
    shutil.rmtree(folder)
    from_zip = load(variant, data_dir=tmp_path)  # finds ml-<variant>.zip in the folder
    assert from_zip.ratings.equals(ratings) and from_zip.movies.equals(movies)
    assert load(variant, data_dir=zipped).movies.equals(movies)


def test_cache_folder_is_used_without_downloading(tmp_path, monkeypatch):
    write_csv(tmp_path / "ml-latest-small")
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("nothing should be downloaded")

    monkeypatch.setattr(movielens, "download", no_network)
    assert load("latest-small").ratings.to_pylist() == RATINGS_CSV_ROWS


def test_download_checks_the_pinned_digests_and_extracts(tmp_path, monkeypatch):
    served = make_zip(write_1m(tmp_path / "src"), tmp_path / "served.zip", "1m")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(cache))
    calls = []

    def fake_download(url, dest, *, digests, timeout, reporter=None):
        calls.append((url, dest, digests))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(served, dest)
        return dest

    monkeypatch.setattr(movielens, "download", fake_download)
    ratings, _ = load("1m")
    assert ratings.to_pylist() == RATINGS_1M
    ((url, dest, digests),) = calls
    assert url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert dest == cache / "ml-1m.zip"
    assert digests == {
        "sha256": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "md5": "c4d9eecfca2ab87c1945afe126590906",
    }
    assert sorted(p.name for p in (cache / "ml-1m").iterdir()) == [
        "movies.dat",
        "ratings.dat",
        "users.dat",
    ]
    assert not list(cache.rglob("*.part"))
    load("1m")  # second call: served from the cache
    assert len(calls) == 1


def test_pinned_archives():
    expected = {
        "20m": (
            198_702_078,
            "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            "cd245b17a1ae2cc31bb14903e1204af3",
        ),
        "25m": (
            261_978_986,
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            "6b51fb2759a8657d3bfcbfc42b592ada",
        ),
        "latest-small": (
            978_202,
            "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            None,
        ),
    }
    for variant, (size, sha256, md5) in expected.items():
        archive = movielens.ARCHIVES[variant]
        assert archive.url == f"https://files.grouplens.org/datasets/movielens/ml-{variant}.zip"
        assert archive.size == size and archive.digests["sha256"] == sha256
        assert archive.digests.get("md5") == md5


def test_unreachable_download_says_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(tmp_path / "cache"))

    def down(url, dest, *, digests, timeout, reporter=None):
        raise OSError("name resolution failed")

    monkeypatch.setattr(movielens, "download", down)
    with pytest.raises(DatasetNotFoundError) as info:
        load("25m")
    message = str(info.value)
    assert "name resolution failed" in message
    assert "https://files.grouplens.org/datasets/movielens/ml-25m.zip" in message
    assert "ratings.csv" in message and "TORCHRS_FN_DATA_DIR" in message


def test_missing_data_dir(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"ratings\.dat.*ml-1m\.zip"):
        load("1m", data_dir=tmp_path / "nowhere")


def test_malformed_dat_line_names_file_and_line(tmp_path):
    bad = RATINGS_DAT.replace("2::2::3::978298413", "2::2::3")
    with pytest.raises(ValueError, match=r"ratings\.dat line 2: expected 4 '::'-separated"):
        load("1m", data_dir=write_1m(tmp_path / "a", ratings=bad))
    bad = RATINGS_DAT.replace("3::1::4::978297867", "3::1::four::978297867")
    with pytest.raises(ValueError, match=r"ratings\.dat line 3: rating must be a number.*four"):
        load("1m", data_dir=write_1m(tmp_path / "b", ratings=bad))
    unknown_movie = RATINGS_DAT + "1::99::4::978824291\n"
    with pytest.raises(ValueError, match=r"ratings\.dat refers to ids that are not there.*99"):
        load("1m", data_dir=write_1m(tmp_path / "c", ratings=unknown_movie))


def test_malformed_csv(tmp_path):
    with pytest.raises(ValueError, match=r"unknown genre name\(s\) \['Cartoon'\]"):
        load("20m", data_dir=write_csv(tmp_path / "a", movies=MOVIES_CSV + "5,X (1990),Cartoon\n"))
    wrong_header = RATINGS_CSV.replace("userId", "user")
    with pytest.raises(ValueError, match=r"ratings\.csv does not have the GroupLens layout"):
        load("20m", data_dir=write_csv(tmp_path / "b", ratings=wrong_header))
    empty_rating = RATINGS_CSV + "7,1,,1493845362\n"
    with pytest.raises(ValueError, match=r"ratings\.csv line 7: rating is empty"):
        load("20m", data_dir=write_csv(tmp_path / "c", ratings=empty_rating))


def test_truncated_zip(tmp_path):
    whole = make_zip(write_1m(tmp_path / "src"), tmp_path / "whole.zip", "1m").read_bytes()
    cut = tmp_path / "ml-1m.zip"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load("1m", data_dir=cut)
