"""Building blocks as module definitions: embeddings, MLP, cross layers, feature interactions and
sequence encoders."""

from .dcn import Cross, MultiLayerDCN, keras_initializer
from .embedding import BagEmbedding, Embedding, HashedEmbedding
from .interaction import DotInteraction
from .mlp import MLP
from .sequence import GRUEncoder, TransformerEncoder

__all__ = [
    "BagEmbedding",
    "Embedding",
    "HashedEmbedding",
    "MLP",
    "Cross",
    "MultiLayerDCN",
    "DotInteraction",
    "keras_initializer",
    "GRUEncoder",
    "TransformerEncoder",
]
