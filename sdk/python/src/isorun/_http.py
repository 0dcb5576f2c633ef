"""HTTP to the runner with the standard library (http.client): JSON calls,
streamed responses and streamed uploads. Errors become IsorunError subclasses."""

from __future__ import annotations

import http.client
import json
import os
import stat
import socket
import urllib.parse
from typing import Any, BinaryIO, Dict, Iterable, Iterator, Optional, Tuple, Union

from .errors import IsorunApiError, IsorunConnectionError, IsorunError


#: what a raw request body may be: bytes, text, a binary file, or an iterable of byte chunks
Body = Union[bytes, bytearray, memoryview, str, BinaryIO, Iterable[bytes]]

CHUNK = 256 * 1024


class Transport:
    def __init__(self, url: str, api_key: Optional[str], timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IsorunError(
                f"ISORUN_URL {url!r} must be an http:// or https:// URL", "invalid-argument"
            )
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout, blocksize=CHUNK)

    def open(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: Optional[Body] = None,
        timeout: Optional[float] = None,
    ) -> http.client.HTTPResponse:
        """Sends a request and returns the (successful) response, to be read by the caller.
        ``timeout`` bounds each socket operation; default the client's."""
        # One connection per request: with "close", closing the response closes the socket.
        headers: Dict[str, str] = {"Accept": "application/json", "Connection": "close"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data: Any = None
        chunked = False
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
            data, length = _raw_body(body)
            if length is None:
                chunked = True
            else:
                headers["Content-Length"] = str(length)
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            try:
                conn.request(
                    method, self._prefix + path, body=data, headers=headers, encode_chunked=chunked
                )
            except (BrokenPipeError, ConnectionResetError):
                # The runner may answer (e.g. 413 too-large) and close before the body is sent.
                pass
            response = conn.getresponse()
        except socket.timeout as err:
            conn.close()
            raise IsorunConnectionError(
                f"{method} {path}: the runner at {self.url} did not answer in time ({err})",
                "timeout",
            ) from None
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise IsorunConnectionError(
                f"cannot reach the isorun runner at {self.url} ({err}); is it running "
                "(docker compose up -d) and is ISORUN_URL right?",
                "unreachable",
            ) from None
        if response.status >= 400:
            try:
                text = response.read().decode("utf-8", "replace")
            finally:
                conn.close()
            raise _api_error(method, path, response.status, text)
        return response

    def request(
        self, method: str, path: str, json_body: Any = None, timeout: Optional[float] = None
    ) -> Any:
        """A JSON call: the parsed answer, or an error."""
        response = self.open(method, path, json_body=json_body, timeout=timeout)
        try:
            text = response.read().decode("utf-8")
        except (OSError, http.client.HTTPException) as err:
            raise IsorunConnectionError(
                f"{method} {path}: the answer broke off ({err})", "stream-broken"
            ) from None
        finally:
            response.close()
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise IsorunApiError(
                f"{method} {path}: the runner answered {response.status} with a body that is not JSON",
                "bad-response",
                response.status,
            ) from None


def _api_error(method: str, path: str, status: int, text: str) -> IsorunApiError:
    error: Dict[str, Any] = {}
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
    except ValueError:
        pass
    return IsorunApiError(
        error.get("message") or f"{method} {path} failed with HTTP {status}",
        error.get("code") or f"http-{status}",
        status,
        error.get("details"),
    )


def _raw_body(body: Body) -> Tuple[Any, Optional[int]]:
    """The body for http.client and its length (None: unknown, sent chunked)."""
    if isinstance(body, str):
        data = body.encode("utf-8")
        return data, len(data)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), len(body)
    if hasattr(body, "read"):
        stream: BinaryIO = body  # type: ignore[assignment]
        try:
            info = os.fstat(stream.fileno())
            if stat.S_ISREG(info.st_mode):
                return stream, info.st_size - stream.tell()
        except (OSError, AttributeError, ValueError):
            pass
        return _read_chunks(stream), None
    return (bytes(chunk) for chunk in body), None  # type: ignore[union-attr]


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk
