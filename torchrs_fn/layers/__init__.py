"""Building blocks as module definitions (embeddings; MLP, cross layers and interactions to come)."""

from .embedding import Embedding

__all__ = ["Embedding"]
