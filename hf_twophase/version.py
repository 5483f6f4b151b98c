"""The version, in one place: the package metadata (pyproject) and the cards read it from here."""

__version__ = "0.1.0"
