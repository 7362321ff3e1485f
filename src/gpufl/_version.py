"""The package version, apart from ``gpufl/__init__`` so every part can read it without importing the client."""

__version__ = "0.1.0"
