"""The one error local services raise; its message always says what to do next."""

from __future__ import annotations


class ServiceSetupError(RuntimeError):
    """A local service could not be prepared or started."""
