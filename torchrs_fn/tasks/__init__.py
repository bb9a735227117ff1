"""Pure losses and task specs (TFRS ``tfrs.tasks``)."""

from .retrieval import Retrieval, retrieval_loss, retrieval_scores

__all__ = ["Retrieval", "retrieval_loss", "retrieval_scores"]
