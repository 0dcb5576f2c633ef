"""The isorun client: creates sandboxes with their egress proxy through the runner
API, runs commands in them (streamed), moves files in and out, reads their network
decisions and destroys them. Standard library only."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union
from urllib.parse import quote, urlencode

from ._http import Transport
from .errors import IsorunApiError, IsorunUsageError
from .files import SandboxFiles
from .process import SandboxProcess
from .models import (
    ExecResult,
    NetworkEvent,
    NetworkProfileDetail,
    NetworkProfileSummary,
    SandboxInfo,
    SuggestedProfile,
)

DEFAULT_URL = "http://127.0.0.1:8080"
#: stdout and stderr of exec() are each kept up to this many bytes by default
DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024
#: errors of a stdin write to a command that has already ended
_STDIN_GONE = frozenset({"process-not-found", "process-exited", "stdin-closed"})

Command = Union[str, Sequence[str]]


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value or None


def _check_network_choice(network_profile: Any, network: Any, what: str) -> None:
    """network_profile and network are mutually exclusive; checked before any request."""
    if network_profile is not None and network is not None:
        raise IsorunUsageError(
            f"{what}: give either network_profile or network, not both", "conflicting-network"
        )
    if network_profile is not None and (
        not isinstance(network_profile, str) or network_profile == ""
    ):
        raise IsorunUsageError(f"{what}: network_profile must be a profile name")
    if network is not None and not isinstance(network, dict):
        raise IsorunUsageError(f"{what}: network must be a dict such as {{'allow': ['pypi.org']}}")


def _check_command(cmd: Any, what: str) -> Union[str, List[str]]:
    if isinstance(cmd, str) and cmd != "":
        return cmd
    if isinstance(cmd, (list, tuple)) and cmd and all(isinstance(c, str) for c in cmd):
        return list(cmd)
    raise IsorunUsageError(f"{what}: cmd must be a string or a non-empty list of strings")


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _given(**fields: Any) -> Dict[str, Any]:
    """A request body of the fields that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}


class Isorun:
    """A client of one runner. ``url`` defaults to ISORUN_URL, then http://127.0.0.1:8080;
    ``api_key`` to ISORUN_API_KEY; ``timeout`` (seconds) bounds each API call's socket
    operations."""

    def __init__(
        self, url: Optional[str] = None, api_key: Optional[str] = None, timeout: float = 120.0
    ) -> None:
        base = (url or _env("ISORUN_URL") or DEFAULT_URL).rstrip("/")
        self._transport = Transport(
            base, api_key if api_key is not None else _env("ISORUN_API_KEY"), timeout
        )
        self.url = base

    def network_profiles(self) -> List[NetworkProfileSummary]:
        """The live profile catalogue of the runner."""
        return [
            NetworkProfileSummary.from_json(p)
            for p in self._transport.request("GET", "/v1/network-profiles")
        ]

    def network_profile(self, name: str) -> NetworkProfileDetail:
        """One profile with its rules resolved."""
        return NetworkProfileDetail.from_json(
            self._transport.request("GET", f"/v1/network-profiles/{_quote(name)}")
        )

    def create(
        self,
        image: str,
        network_profile: Optional[str] = None,
        network: Optional[Dict[str, Any]] = None,
        env: Optional[Dict[str, str]] = None,
        resources: Optional[Dict[str, float]] = None,
        timeout_ms: Optional[int] = None,
    ) -> "Sandbox":
        """Creates a sandbox and its egress proxy. ``network_profile`` (a name) and ``network``
        (``{'allow': [...], 'deny': [...], 'mode': ..., 'include': [...]}``) are mutually
        exclusive; without either the runner's default profile applies. ``resources`` takes
        ``memoryMb``, ``cpus`` and ``pids``; ``timeout_ms`` is the sandbox's lifetime."""
        if not isinstance(image, str) or image == "":
            raise IsorunUsageError("create: image is required")
        _check_network_choice(network_profile, network, "create")
        body = _given(
            image=image,
            networkProfile=network_profile,
            network=network,
            env=env,
            resources=resources,
            timeoutMs=timeout_ms,
        )
        return Sandbox(
            self._transport,
            SandboxInfo.from_json(self._transport.request("POST", "/v1/sandboxes", body)),
        )

    def get(self, id: str) -> "Sandbox":
        """An existing sandbox, by id."""
        return Sandbox(
            self._transport,
            SandboxInfo.from_json(self._transport.request("GET", f"/v1/sandboxes/{_quote(id)}")),
        )

    def list(self) -> List["Sandbox"]:
        return [
            Sandbox(self._transport, SandboxInfo.from_json(i))
            for i in self._transport.request("GET", "/v1/sandboxes")
        ]


class Sandbox:
    """A sandbox. As a context manager (``with isorun.create(...) as sbx:``) it is destroyed on exit."""

    def __init__(self, transport: Transport, info: SandboxInfo) -> None:
        self._transport = transport
        #: what the runner said when this object was made; refresh() updates it
        self.info = info
        #: files in the sandbox: read, write, list, remove, upload and download
        self.files = SandboxFiles(transport, info.id)

    @property
    def id(self) -> str:
        return self.info.id

    def _path(self, suffix: str = "") -> str:
        return f"/v1/sandboxes/{_quote(self.id)}{suffix}"

    def spawn(
        self,
        cmd: Command,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        stdin: bool = False,
    ) -> SandboxProcess:
        """Starts a command (a string runs under /bin/sh -c, a list as is) and returns once it
        runs. Its output streams as it comes; ``stdin=True`` keeps its stdin open for
        ``write()``/``end()``; after ``timeout_ms`` (default 10 minutes) it is killed with its
        whole process group."""
        body = _given(
            cmd=_check_command(cmd, "spawn"),
            env=env,
            cwd=cwd,
            timeoutMs=timeout_ms,
            stdin=True if stdin else None,
        )
        # Heartbeats come every 15 s, so a silent command never trips the socket timeout.
        timeout = max(self._transport.timeout, 60.0)
        response = self._transport.open(
            "POST", self._path("/processes"), json_body=body, timeout=timeout
        )
        return SandboxProcess(self._transport, self.id, response)

    def exec(
        self,
        cmd: Command,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        stdin: Optional[Union[str, bytes]] = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> ExecResult:
        """Runs a command to its end and returns ``ExecResult(exit_code, stdout, stderr,
        timed_out, truncated)``: spawn(), collected. ``stdin`` is written, then closed."""
        _check_command(cmd, "exec")
        process = self.spawn(cmd, env=env, cwd=cwd, timeout_ms=timeout_ms, stdin=stdin is not None)
        with process:
            if stdin is not None:
                try:
                    process.write(stdin)
                    process.end()
                except IsorunApiError as err:
                    # A command that exits without reading its input is no error (as with a pipe).
                    if err.code not in _STDIN_GONE:
                        raise
            output: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
            truncated = False
            for name, chunk in process.events():
                room = max_output_bytes - len(output[name])
                if len(chunk) > room:
                    truncated = True
                output[name] += chunk[: max(room, 0)]
            result = process.wait()
        return ExecResult(
            exit_code=result.exit_code,
            stdout=output["stdout"].decode("utf-8", "replace"),
            stderr=output["stderr"].decode("utf-8", "replace"),
            timed_out=result.timed_out,
            truncated=truncated,
        )

    def network_events(
        self, action: Optional[str] = None, limit: Optional[int] = None, since: Optional[str] = None
    ) -> List[NetworkEvent]:
        """Recent decisions of this sandbox's egress proxy, oldest first; ``action`` is
        ``'allow'``, ``'deny'``, ``'would-deny'`` (report mode) or ``'blocked'`` (both),
        ``since`` an ISO time."""
        query = {
            k: v
            for k, v in (("action", action), ("limit", limit), ("since", since))
            if v is not None
        }
        suffix = f"?{urlencode(query)}" if query else ""
        result = self._transport.request("GET", self._path(f"/network-events{suffix}"))
        return [NetworkEvent.from_json(e) for e in result["events"]]

    def suggest_profile(
        self, base: Optional[str] = None, name: Optional[str] = None
    ) -> SuggestedProfile:
        """A profile learned from what this sandbox used (run it in report mode, or read
        its refusals): minimal rules, commented YAML, and the diff against ``base``."""
        query = {k: v for k, v in (("base", base), ("name", name)) if v is not None}
        suffix = f"?{urlencode(query)}" if query else ""
        result = self._transport.request("GET", self._path(f"/suggested-profile{suffix}"))
        return SuggestedProfile.from_json(result)

    def update_network(
        self, network_profile: Optional[str] = None, network: Optional[Dict[str, Any]] = None
    ) -> SandboxInfo:
        """Replaces the sandbox's network policy live: new connections follow it."""
        _check_network_choice(network_profile, network, "update_network")
        if network_profile is None and network is None:
            raise IsorunUsageError("update_network: give network_profile or network")
        body = (
            {"networkProfile": network_profile}
            if network_profile is not None
            else {"network": network}
        )
        self.info = SandboxInfo.from_json(
            self._transport.request("PUT", self._path("/network"), body)
        )
        return self.info

    def refresh(self) -> SandboxInfo:
        self.info = SandboxInfo.from_json(self._transport.request("GET", self._path()))
        return self.info

    def destroy(self) -> None:
        """Removes the sandbox, its proxy and its network. Destroying twice is not an error."""
        try:
            self._transport.request("DELETE", self._path())
        except IsorunApiError as err:
            if err.status != 404:
                raise

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
