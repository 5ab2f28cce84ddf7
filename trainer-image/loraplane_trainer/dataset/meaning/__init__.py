"""Meaning-aware comparison: sentence embeddings, identifiers, language and harmful content."""
