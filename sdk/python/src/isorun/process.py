"""A command running in a sandbox, as the runner streams it: one NDJSON line
per event over one HTTP response (start, stdout/stderr as base64, heartbeats,
then exit or error). stdin and signals go in separate requests.

Events are read on demand, in the calling thread: iterating ``stdout`` reads
the stream and keeps stderr chunks that arrive meanwhile for ``stderr`` (and
the other way round), so neither can block the other."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, Iterator, Optional, Tuple, Union

from .errors import IsorunApiError, IsorunConnectionError, IsorunError
from .models import ProcessResult

if TYPE_CHECKING:
    from ._http import Transport


class SandboxProcess:
    """Returned by ``Sandbox.spawn()``. ``stdout`` and ``stderr`` iterate over byte chunks as
    they arrive; ``events()`` gives both in arrival order; ``write()``/``end()`` feed stdin;
    ``wait()`` returns how it ended; ``kill()`` stops it with everything it started. As a
    context manager it kills the command if it is still running on exit."""

    def __init__(
        self, transport: "Transport", sandbox_id: str, response: http.client.HTTPResponse
    ) -> None:
        self._transport = transport
        self.sandbox_id = sandbox_id
        self._response = response
        self._lock = threading.RLock()
        # Unread chunks of each stream, numbered in arrival order (for events()).
        self._buffers: Dict[str, Deque[Tuple[int, bytes]]] = {"stdout": deque(), "stderr": deque()}
        self._arrived = 0
        self._result: Optional[ProcessResult] = None
        self._error: Optional[IsorunError] = None
        try:
            first = self._read_event()
        except IsorunError:
            self._close()
            raise
        if first is None or first.get("type") != "start":
            self._close()
            raise IsorunConnectionError(
                f"the runner's process stream for sandbox {sandbox_id} did not begin with a start event",
                "bad-response",
            )
        #: the runner's id of this process
        self.id: str = first["id"]
        #: the command's process id inside the sandbox
        self.pid: int = first["pid"]
        self._stdin_lock = threading.Lock()

    # -- reading the event stream ------------------------------------------------

    def _read_event(self) -> Optional[dict]:
        while True:
            try:
                line = self._response.readline()
            except (OSError, http.client.HTTPException, ValueError) as err:
                raise IsorunConnectionError(
                    f"the connection to the runner broke while the process ran: {err}",
                    "stream-broken",
                ) from None
            if not line:
                return None
            if line.strip():
                return json.loads(line)

    def _pump_one(self) -> bool:
        """Reads one event into the buffers; False once the stream is over."""
        if self._result is not None or self._error is not None:
            return False
        try:
            event = self._read_event()
        except IsorunError as err:
            self._finish(error=err)
            return False
        if event is None:
            self._finish(
                error=IsorunConnectionError(
                    f"the runner ended the stream of process {self.id} without an exit status",
                    "stream-broken",
                )
            )
            return False
        kind = event.get("type")
        if kind in ("stdout", "stderr"):
            self._buffers[kind].append((self._arrived, base64.b64decode(event["data"])))
            self._arrived += 1
        elif kind == "exit":
            self._finish(
                result=ProcessResult(exit_code=event["exitCode"], timed_out=event["timedOut"])
            )
        elif kind == "error":
            error = event.get("error") or {}
            self._finish(
                error=IsorunApiError(
                    error.get("message", "the process failed"), error.get("code", "error")
                )
            )
        return True

    def _finish(
        self, result: Optional[ProcessResult] = None, error: Optional[IsorunError] = None
    ) -> None:
        self._result = result
        self._error = error
        self._close()

    def _close(self) -> None:
        try:
            self._response.close()
        except OSError:
            pass

    def _next_chunk(self, names: Tuple[str, ...]) -> Optional[Tuple[str, bytes]]:
        """The earliest unread chunk of the given streams, reading more as needed; None at the end."""
        with self._lock:
            while True:
                ready = [name for name in names if self._buffers[name]]
                if ready:
                    name = min(ready, key=lambda n: self._buffers[n][0][0])
                    return name, self._buffers[name].popleft()[1]
                if not self._pump_one():
                    return None

    def _chunks(self, names: Tuple[str, ...]) -> Iterator[Tuple[str, bytes]]:
        while True:
            item = self._next_chunk(names)
            if item is None:
                return
            yield item

    @property
    def stdout(self) -> Iterator[bytes]:
        """stdout, chunk by chunk as it arrives (bytes)."""
        return (chunk for _, chunk in self._chunks(("stdout",)))

    @property
    def stderr(self) -> Iterator[bytes]:
        """stderr, chunk by chunk as it arrives (bytes)."""
        return (chunk for _, chunk in self._chunks(("stderr",)))

    def events(self) -> Iterator[Tuple[str, bytes]]:
        """(``"stdout"`` or ``"stderr"``, chunk) pairs in the order they arrived."""
        return self._chunks(("stdout", "stderr"))

    def wait(self) -> ProcessResult:
        """Reads to the end (keeping unread output for stdout/stderr) and returns
        ``ProcessResult(exit_code, timed_out)``; raises if the stream broke or the sandbox went away.
        """
        with self._lock:
            while self._pump_one():
                pass
            if self._error is not None:
                raise self._error
            assert self._result is not None
            return self._result

    # -- stdin and signals --------------------------------------------------------

    def _path(self) -> str:
        from urllib.parse import quote

        return (
            f"/v1/sandboxes/{quote(self.sandbox_id, safe='')}/processes/{quote(self.id, safe='')}"
        )

    def write(self, data: Union[bytes, str]) -> None:
        """Writes to the command's stdin (spawned with ``stdin=True``)."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        with self._stdin_lock:
            self._transport.open("POST", f"{self._path()}/stdin", body=payload).close()

    def end(self) -> None:
        """Closes the command's stdin: it reads end-of-file."""
        with self._stdin_lock:
            self._transport.open("POST", f"{self._path()}/stdin?end=true", body=b"").close()

    def kill(self, signal: str = "SIGKILL") -> None:
        """Sends a signal (default SIGKILL) to the command, its process group and every process it
        started. A process that has already ended is not an error."""
        try:
            self._transport.request("POST", f"{self._path()}/kill", {"signal": signal})
        except IsorunApiError as err:
            if err.code != "process-not-found":
                raise

    def __enter__(self) -> "SandboxProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._result is None and self._error is None:
            try:
                self.kill()
            finally:
                self._close()
