"""Astra: an open navigation stack and robotics data platform for indoor mobile robots."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astra-nav")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
