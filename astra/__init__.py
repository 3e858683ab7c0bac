"""Astra: an open navigation stack and robotics data platform for indoor mobile robots."""

from schemas.episode import SOFTWARE_VERSION as __version__

__all__ = ["__version__"]
