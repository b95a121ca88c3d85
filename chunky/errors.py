"""The one error family of chunky.

Every error the library raises on purpose is a `ChunkyError`, with a message that names the input,
what was expected and what to do. Only `app.py` turns these into UI messages.
"""


class ChunkyError(Exception):
    """Base class of every error chunky raises on purpose."""


class InvalidInputError(ChunkyError, ValueError):
    """An argument has the wrong shape, range, type or value."""


class CheckpointError(ChunkyError):
    """A checkpoint file or dict is not a StyleGAN2 generator this code can load."""


class WeightsUnavailableError(ChunkyError, FileNotFoundError):
    """A registered weight file could be found neither locally nor on any mirror."""


class ChecksumError(ChunkyError):
    """A downloaded file does not match the sha256 pinned in the registry."""
