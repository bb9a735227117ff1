"""Public datasets as Arrow tables, read from the publishers' own file layouts.

* ``movielens.load(variant)`` — MovieLens 100k, 1m, 20m, 25m, latest-small (TFDS features).
* ``amazon.load_reviews(path)`` / ``amazon.load_metadata(path)`` — Amazon Reviews 2018 / 2023.
* ``spotify_mpd.load(path)`` — the Spotify Million Playlist Dataset's playlists and tracks.

Where the files have a public URL (MovieLens), downloads are checksummed and cached under
``$TORCHRS_FN_DATA_DIR`` (default ``~/.cache/torchrs_fn``), and ``DatasetNotFoundError`` says
what to do when the files can be neither found nor downloaded. Amazon Reviews and the MPD are
handed out behind forms, so those loaders read a path you give and say where to get the files.
"""

from . import amazon, movielens, spotify_mpd
from ._files import DATA_DIR_ENV, DatasetNotFoundError, cache_dir

__all__ = [
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
    "amazon",
    "cache_dir",
    "movielens",
    "spotify_mpd",
]
