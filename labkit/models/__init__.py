"""labkit models."""
