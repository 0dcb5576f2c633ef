"""isorun: Docker sandboxes whose only way out is an egress proxy that enforces a
network profile. ``from isorun import Isorun``; standard library only."""

from .client import DEFAULT_URL, Isorun, Sandbox
from .errors import (
    IsorunApiError,
    IsorunConnectionError,
    IsorunError,
    IsorunFileError,
    IsorunUsageError,
)
from .files import SandboxFiles
from .process import SandboxProcess
from .models import (
    ExecResult,
    FileEntry,
    NetworkEvent,
    NetworkProfileDetail,
    NetworkProfileSummary,
    ProcessResult,
    SandboxInfo,
    SuggestedProfile,
    TransferResult,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "ExecResult",
    "FileEntry",
    "Isorun",
    "IsorunApiError",
    "IsorunConnectionError",
    "IsorunError",
    "IsorunFileError",
    "IsorunUsageError",
    "NetworkEvent",
    "NetworkProfileDetail",
    "NetworkProfileSummary",
    "ProcessResult",
    "Sandbox",
    "SandboxFiles",
    "SandboxInfo",
    "SandboxProcess",
    "SuggestedProfile",
    "TransferResult",
]
