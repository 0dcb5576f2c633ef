"""What the runner API returns, as dataclasses with Python names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


def _get(data: Dict[str, Any], key: str, default: Any = None) -> Any:
    value = data.get(key, default)
    return default if value is None else value


@dataclass(frozen=True)
class NetworkProfileSummary:
    name: str
    description: str
    mode: str

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "NetworkProfileSummary":
        return cls(name=data["name"], description=_get(data, "description", ""), mode=data["mode"])


@dataclass(frozen=True)
class NetworkProfileDetail:
    """A profile with its includes resolved. ``allow``/``deny`` entries are ``{"rule", "from"}``."""

    name: str
    description: str
    mode: str
    includes: List[str]
    allow: List[Dict[str, str]]
    deny: List[Dict[str, str]]
    endpoints: List[Dict[str, Any]]

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "NetworkProfileDetail":
        return cls(
            name=data["name"],
            description=_get(data, "description", ""),
            mode=data["mode"],
            includes=list(_get(data, "includes", [])),
            allow=list(_get(data, "allow", [])),
            deny=list(_get(data, "deny", [])),
            endpoints=list(_get(data, "endpoints", [])),
        )


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    image: str
    #: running, proxy-down (the proxy died: no network at all) or stopped
    status: str
    #: the profile in force, or "custom" for an explicit network policy
    network_profile: str
    network: Optional[Dict[str, Any]]
    created_at: str
    expires_at: Optional[str]
    #: the sandbox-facing address of its egress proxy
    proxy_address: str

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "SandboxInfo":
        return cls(
            id=data["id"],
            image=data["image"],
            status=data["status"],
            network_profile=data["networkProfile"],
            network=data.get("network"),
            created_at=data["createdAt"],
            expires_at=data.get("expiresAt"),
            proxy_address=_get(data, "proxyAddress", ""),
        )


@dataclass(frozen=True)
class NetworkEvent:
    """One decision of a sandbox's egress proxy."""

    time: str
    sandbox: str
    profile: str
    #: http, connect, socks, tls or dns
    protocol: str
    host: str
    port: int
    #: allow or deny
    action: str
    rule: Optional[str]
    reason: str
    sni: Optional[str] = None
    method: Optional[str] = None
    path: Optional[str] = None
    qtype: Optional[str] = None
    detail: Optional[str] = None
    client: Optional[str] = None
    address: Optional[str] = None
    error: Optional[str] = None
    bytes_up: int = 0
    bytes_down: int = 0
    duration_ms: float = 0
    #: report mode: allowed, but the rules would refuse it ({"reason", "rule", "detail"?})
    would_deny: Optional[Dict[str, Any]] = None
    #: a request held for an approval: {"id", "answer", "by"}
    approval: Optional[Dict[str, Any]] = None
    #: the budget (limits pattern) the destination counts against, with its usage
    budget: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "NetworkEvent":
        return cls(
            time=data["time"],
            sandbox=_get(data, "sandbox", ""),
            profile=_get(data, "profile", ""),
            protocol=data["protocol"],
            host=data["host"],
            port=data["port"],
            action=data["action"],
            rule=data.get("rule"),
            reason=_get(data, "reason", ""),
            sni=data.get("sni"),
            method=data.get("method"),
            path=data.get("path"),
            qtype=data.get("qtype"),
            detail=data.get("detail"),
            client=data.get("client"),
            address=data.get("address"),
            error=data.get("error"),
            bytes_up=_get(data, "bytesUp", 0),
            bytes_down=_get(data, "bytesDown", 0),
            duration_ms=_get(data, "durationMs", 0),
            would_deny=data.get("wouldDeny"),
            approval=data.get("approval"),
            budget=data.get("budget"),
        )


@dataclass(frozen=True)
class SuggestedProfile:
    """A profile learned from what a sandbox used: ``yaml`` is ready to save as NAME.yaml."""

    name: str
    yaml: str
    include: List[str]
    #: the rules added, each {"rule", "hosts", "count", "firstSeen"}
    allow: List[Dict[str, Any]]
    #: against the base profile: {"base", "added", "unused"}
    diff: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "SuggestedProfile":
        return cls(
            name=data["name"],
            yaml=data["yaml"],
            include=list(data.get("include", [])),
            allow=list(data.get("allow", [])),
            diff=data.get("diff"),
        )


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    #: the command ran past its timeout and was killed; exit_code is then 124
    timed_out: bool = False
    #: stdout or stderr was cut at max_output_bytes
    truncated: bool = False


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int
    timed_out: bool


@dataclass(frozen=True)
class FileEntry:
    name: str
    #: file, directory, symlink or other
    type: str
    size: int
    #: permission bits, e.g. 0o644
    mode: int
    mtime: str
    link_target: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "FileEntry":
        return cls(
            name=data["name"],
            type=data["type"],
            size=data["size"],
            mode=data["mode"],
            mtime=data["mtime"],
            link_target=data.get("linkTarget"),
        )


@dataclass
class TransferResult:
    """What upload() or download() did."""

    files: int = 0
    directories: int = 0
    bytes: int = 0
    #: symlinks and special files not copied (paths on the side they were found)
    skipped: List[str] = field(default_factory=list)
