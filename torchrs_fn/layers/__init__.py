"""Building blocks as module definitions (MLP, cross layers, interactions) — filled by later issues."""
