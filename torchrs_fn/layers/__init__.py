"""Building blocks as module definitions: embeddings, MLP, cross layers, feature interactions and
sequence encoders."""

from .dcn import Cross, MultiLayerDCN, keras_initializer
from .embedding import BagEmbedding, Embedding, HashedEmbedding, embedding_lookup
from .interaction import DotInteraction
from .mlp import MLP
from .sequence import GRUEncoder, TransformerEncoder

__all__ = [
    "BagEmbedding",
    "Embedding",
    "HashedEmbedding",
    "embedding_lookup",
    "MLP",
    "Cross",
    "MultiLayerDCN",
    "DotInteraction",
    "keras_initializer",
    "GRUEncoder",
    "TransformerEncoder",
]
