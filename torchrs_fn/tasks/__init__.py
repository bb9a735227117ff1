"""Pure losses and task specs (TFRS ``tfrs.tasks``; TF-Ranking's losses).

``Retrieval`` and ``Ranking`` are tasks (``loss`` and ``metrics``); ``MultiTask`` combines them
with weights a train state can carry. The learning-to-rank losses of ``tasks.ranking`` are also
exported here.
"""

from .base import WEIGHT_PREFIX, MultiTask, Task
from .ranking import (
    Ranking,
    approx_mrr_loss,
    approx_ndcg_loss,
    gumbel_approx_ndcg_loss,
    label_diff_lambda_weight,
    list_mle_loss,
    mean_squared_loss,
    ndcg_lambda_weight,
    neural_sort_cross_entropy_loss,
    pairwise_hinge_loss,
    pairwise_logistic_loss,
    pairwise_mse_loss,
    pairwise_soft_zero_one_loss,
    sigmoid_cross_entropy_loss,
    softmax_loss,
)
from .retrieval import Retrieval, mixed_sampling_probability, retrieval_loss, retrieval_scores

__all__ = [
    "Task",
    "MultiTask",
    "WEIGHT_PREFIX",
    "Retrieval",
    "retrieval_loss",
    "retrieval_scores",
    "mixed_sampling_probability",
    "Ranking",
    "mean_squared_loss",
    "sigmoid_cross_entropy_loss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "pairwise_soft_zero_one_loss",
    "pairwise_mse_loss",
    "softmax_loss",
    "list_mle_loss",
    "approx_ndcg_loss",
    "approx_mrr_loss",
    "gumbel_approx_ndcg_loss",
    "neural_sort_cross_entropy_loss",
    "label_diff_lambda_weight",
    "ndcg_lambda_weight",
]
