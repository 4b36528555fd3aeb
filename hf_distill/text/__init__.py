"""Text-specific parts: datasets (files, Hub, the built-in tweets) and DistilBERT-style students."""
