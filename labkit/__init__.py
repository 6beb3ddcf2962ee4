"""labkit: the helper package of a deep-learning lab course (see README.md)."""
from labkit.version import __version__

__all__ = ["__version__"]
