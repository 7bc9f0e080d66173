"""Voice profiles and speaker embeddings."""
