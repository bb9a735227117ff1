"""Top-k retrieval indexes."""

from .brute_force import BruteForce, brute_force_top_k

__all__ = ["BruteForce", "brute_force_top_k"]
