"""Pure metric functions and mergeable accumulators."""

from .aggregate import MeanState, mean_init, mean_merge, mean_result, mean_update
from .retrieval import (
    DEFAULT_KS,
    candidate_rows,
    factorized_top_k,
    positive_ranks,
    top_k_metric_names,
)

__all__ = [
    "DEFAULT_KS",
    "factorized_top_k",
    "positive_ranks",
    "top_k_metric_names",
    "candidate_rows",
    "MeanState",
    "mean_init",
    "mean_update",
    "mean_merge",
    "mean_result",
]
