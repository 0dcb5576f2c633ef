"""Files in a sandbox through the runner's file API: one file per request as raw
bytes, and JSON directory listings. upload() and download() walk directories
here, on this machine, so they decide what is written where: a download writes
only inside its local directory whatever names or symlinks the sandbox returns,
and an upload never follows a symlink."""

from __future__ import annotations

import http.client
import json
import os
import stat
from typing import TYPE_CHECKING, BinaryIO, Iterable, List, Union
from urllib.parse import quote

from .errors import IsorunApiError, IsorunFileError, IsorunUsageError
from .models import FileEntry, TransferResult

if TYPE_CHECKING:
    from ._http import Transport

#: what write() takes: bytes, text, a binary file object, or an iterable of byte chunks
FileData = Union[bytes, bytearray, memoryview, str, BinaryIO, Iterable[bytes]]

_CHUNK = 256 * 1024


class SandboxFiles:
    def __init__(self, transport: "Transport", sandbox_id: str) -> None:
        self._transport = transport
        self.sandbox_id = sandbox_id

    def _route(self, suffix: str, path: str, extra: str = "") -> str:
        if not isinstance(path, str) or not path.startswith("/"):
            raise IsorunUsageError(f"files: {path!r} must be an absolute path in the sandbox")
        return (
            f"/v1/sandboxes/{quote(self.sandbox_id, safe='')}/files{suffix}"
            f"?path={quote(path, safe='')}{extra}"
        )

    def write(self, path: str, data: FileData, mode: int = 0o644) -> int:
        """Writes a file (replacing it), making missing parent directories; returns its size.
        A file object or an iterable is streamed."""
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise IsorunUsageError("files.write: mode must be permission bits from 0 to 0o777")
        url = self._route("", path, f"&mode={mode:03o}")
        try:
            response = self._transport.open("PUT", url, body=data)
            try:
                return int(json.loads(response.read())["size"])
            finally:
                response.close()
        except IsorunApiError as err:
            raise IsorunFileError.wrap(err, path) from None

    def read(self, path: str, format: str = "bytes") -> Union[bytes, str, http.client.HTTPResponse]:
        """Reads a file: bytes by default, str with ``format='text'``, or with
        ``format='stream'`` a binary file object to read() from and close() (or use in ``with``)."""
        if format not in ("bytes", "text", "stream"):
            raise IsorunUsageError("files.read: format must be 'bytes', 'text' or 'stream'")
        try:
            response = self._transport.open("GET", self._route("", path))
        except IsorunApiError as err:
            raise IsorunFileError.wrap(err, path) from None
        if format == "stream":
            return response
        try:
            data = response.read()
        finally:
            response.close()
        return data.decode("utf-8") if format == "text" else data

    def list(self, dir: str) -> List[FileEntry]:
        """The entries of a directory (not recursive), sorted by name."""
        try:
            result = self._transport.request("GET", self._route("/list", dir))
        except IsorunApiError as err:
            raise IsorunFileError.wrap(err, dir) from None
        return [FileEntry.from_json(e) for e in result["entries"]]

    def remove(self, path: str) -> None:
        """Removes a file, a symlink (not what it points to) or a directory with its contents."""
        try:
            self._transport.request("DELETE", self._route("", path))
        except IsorunApiError as err:
            raise IsorunFileError.wrap(err, path) from None

    def make_dir(self, path: str) -> None:
        """Makes a directory and any missing parents; an existing directory is fine."""
        try:
            self._transport.request("POST", self._route("/mkdir", path))
        except IsorunApiError as err:
            raise IsorunFileError.wrap(err, path) from None

    def upload(self, local_dir: str, dir: str) -> TransferResult:
        """Copies a local directory tree into ``dir`` in the sandbox (made if missing).
        Symlinks are skipped, never followed: nothing outside ``local_dir`` is sent."""
        root = os.path.realpath(local_dir)
        if not os.path.isdir(root):
            raise IsorunFileError(f"{local_dir} is not a directory", "not-a-directory", local_dir)
        result = TransferResult()
        self.make_dir(dir)
        self._upload_tree(root, dir.rstrip("/") or "/", result)
        return result

    def _upload_tree(self, local: str, remote: str, result: TransferResult) -> None:
        with os.scandir(local) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                remote_path = f"{remote.rstrip('/')}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    self.make_dir(remote_path)
                    result.directories += 1
                    self._upload_tree(entry.path, remote_path, result)
                elif entry.is_file(follow_symlinks=False):
                    # O_NOFOLLOW: a file swapped for a symlink since the scan is refused, not followed.
                    fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                    with os.fdopen(fd, "rb") as f:
                        info = os.fstat(f.fileno())
                        self.write(remote_path, f, mode=stat.S_IMODE(info.st_mode) & 0o777)
                    result.files += 1
                    result.bytes += info.st_size
                else:
                    result.skipped.append(entry.path)

    def download(self, dir: str, local_dir: str) -> TransferResult:
        """Copies ``dir`` from the sandbox into a local directory (made if missing). Only
        regular files and directories are copied; symlinks and special files are skipped.
        Every name is checked to be one plain path segment, and no local symlink is written
        through."""
        os.makedirs(local_dir, exist_ok=True)
        root = os.path.realpath(local_dir)
        result = TransferResult()
        self._download_tree(dir.rstrip("/") or "/", root, root, result)
        return result

    def _download_tree(self, remote: str, local: str, root: str, result: TransferResult) -> None:
        for entry in self.list(remote):
            remote_path = f"{remote.rstrip('/')}/{entry.name}"
            local_path = local_child(root, local, entry.name, remote_path)
            if entry.type == "directory":
                _real_directory(local_path, remote_path)
                result.directories += 1
                self._download_tree(remote_path, local_path, root, result)
            elif entry.type == "file":
                result.bytes += self._download_file(remote_path, local_path, entry.mode)
                result.files += 1
            else:
                result.skipped.append(remote_path)

    def _download_file(self, remote_path: str, local_path: str, mode: int) -> int:
        source = self.read(remote_path, format="stream")
        assert isinstance(source, http.client.HTTPResponse)
        with source:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            try:
                fd = os.open(local_path, flags, 0o600)
            except OSError as err:
                if os.path.islink(local_path):
                    raise IsorunFileError(
                        f"{local_path} is a symlink; download does not write through symlinks",
                        "unsafe-name",
                        local_path,
                    ) from None
                raise err
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode & 0o777)
                size = 0
                while True:
                    chunk = source.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    size += len(chunk)
        return size


def local_child(root: str, parent: str, name: str, remote_path: str) -> str:
    """The local path for a name from a sandbox listing: it must be one plain path segment,
    and the result must stay inside the download's root."""
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
        and not (os.sep == "\\" and "\\" in name)
    )
    path = os.path.join(parent, name) if plain else ""
    if not plain or os.path.commonpath([root, path]) != root or path == root:
        raise IsorunFileError(
            f"the sandbox listed an entry named {name!r} under {remote_path.rsplit('/', 1)[0] or '/'}, "
            "which is not a plain file name; nothing was written for it",
            "unsafe-name",
            remote_path,
        )
    return path


def _real_directory(path: str, remote_path: str) -> None:
    """Makes a local directory, or accepts an existing real one (not a symlink)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if os.path.islink(path) or not os.path.isdir(path):
            raise IsorunFileError(
                f"{path} exists and is not a directory (or is a symlink); download does not write through it",
                "unsafe-name",
                remote_path,
            ) from None
