"""Model definitions and the functional core (``init`` / ``apply`` / ``Model``); retrieval towers
(``FeatureTower``, ``TwoTowerModel``) and the DLRM/DCN ranking model."""

from .base import Model, Params, apply, buffers, init, loss_fn_of
from .ranking import DLRM
from .towers import FeatureTower, Numeric, TwoTowerModel, candidate_embeddings_for_table

__all__ = [
    "Model",
    "Params",
    "apply",
    "buffers",
    "init",
    "loss_fn_of",
    "DLRM",
    "FeatureTower",
    "Numeric",
    "TwoTowerModel",
    "candidate_embeddings_for_table",
]
