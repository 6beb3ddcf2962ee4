from labkit.version import __version__
