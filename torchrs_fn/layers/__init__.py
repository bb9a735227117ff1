"""Building blocks as module definitions (embeddings; MLP, cross layers and interactions to come)."""

from .embedding import BagEmbedding, Embedding, HashedEmbedding

__all__ = ["BagEmbedding", "Embedding", "HashedEmbedding"]
