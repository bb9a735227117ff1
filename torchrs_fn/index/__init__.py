"""Top-k retrieval indexes: exact (``BruteForce``, ``Streaming``) and approximate (``ScaNN``,
``Faiss``, optional extras) behind one interface."""

from .approximate import ApproximateIndex, Faiss, ScaNN
from .brute_force import BruteForce, TopKMerger, brute_force_top_k
from .streaming import Streaming

__all__ = [
    "ApproximateIndex",
    "BruteForce",
    "Faiss",
    "ScaNN",
    "Streaming",
    "TopKMerger",
    "brute_force_top_k",
]
