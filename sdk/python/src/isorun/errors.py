"""Every error the SDK raises is an IsorunError with a ``code``: the runner's
error code for API errors, or one of the SDK's own."""

from __future__ import annotations

from typing import Any, Optional


class IsorunError(Exception):
    """Base of every isorun error. ``code`` is machine-readable, ``status`` the HTTP status if any."""

    def __init__(
        self, message: str, code: str, status: Optional[int] = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details


class IsorunUsageError(IsorunError):
    """Arguments refused before anything is sent (e.g. both network_profile and network)."""

    def __init__(self, message: str, code: str = "invalid-argument") -> None:
        super().__init__(message, code)


class IsorunApiError(IsorunError):
    """The runner answered with an error."""


class IsorunConnectionError(IsorunError):
    """The runner could not be reached, did not answer in time, or a stream broke off."""


FILE_ERROR_CODES = frozenset(
    {
        "not-found",
        "too-large",
        "is-a-directory",
        "not-a-directory",
        "not-a-file",
        "invalid-path",
        "permission-denied",
        "missing-tool",
        "unsafe-name",
    }
)


class IsorunFileError(IsorunApiError):
    """A file operation failed for a reason that concerns the file; ``code`` says which
    (not-found, too-large, is-a-directory, not-a-directory, not-a-file, invalid-path,
    permission-denied, missing-tool, unsafe-name) and ``path`` which file."""

    def __init__(self, message: str, code: str, path: str, status: Optional[int] = None) -> None:
        super().__init__(message, code, status)
        self.path = path

    @staticmethod
    def wrap(err: IsorunApiError, path: str) -> IsorunError:
        """An API error of a file route as an IsorunFileError when it is about the file."""
        if err.code in FILE_ERROR_CODES:
            return IsorunFileError(err.message, err.code, path, err.status)
        return err
