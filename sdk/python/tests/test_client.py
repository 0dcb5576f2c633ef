"""Checks that need no runner: arguments refused before any request, errors, and the
name checks of download(). A real HTTP server on loopback counts what reaches it."""

from __future__ import annotations

import http.server
import os
import socket
import tempfile
import threading
import unittest

from isorun import Isorun, IsorunConnectionError, IsorunFileError, IsorunUsageError
from isorun.files import local_child


class CountingServer:
    """An HTTP server on 127.0.0.1 that answers 500 to everything and counts requests."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                outer.requests += 1
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UsageChecks(unittest.TestCase):
    def setUp(self) -> None:
        self.server = CountingServer()
        self.client = Isorun(url=self.server.url, api_key="k" * 32)

    def tearDown(self) -> None:
        self.server.close()

    def test_network_profile_and_network_together_raise_before_any_request(self) -> None:
        with self.assertRaises(IsorunUsageError) as caught:
            self.client.create(
                image="python:3.12-slim",
                network_profile="claude-code",
                network={"allow": ["pypi.org"]},
            )
        self.assertEqual(caught.exception.code, "conflicting-network")
        self.assertIn("not both", str(caught.exception))
        self.assertEqual(self.server.requests, 0)

    def test_other_bad_arguments_raise_before_any_request(self) -> None:
        with self.assertRaises(IsorunUsageError):
            self.client.create(image="")
        with self.assertRaises(IsorunUsageError):
            self.client.create(image="x", network=["pypi.org"])  # type: ignore[arg-type]
        with self.assertRaises(IsorunUsageError):
            self.client.create(image="x", network_profile="")
        self.assertEqual(self.server.requests, 0)

    def test_the_server_is_really_there(self) -> None:
        # The counter counts: a real call reaches the server (and its 500 is an API error).
        with self.assertRaises(Exception) as caught:
            self.client.network_profiles()
        self.assertEqual(getattr(caught.exception, "status", None), 500)
        self.assertEqual(self.server.requests, 1)


class ConnectionErrors(unittest.TestCase):
    def test_an_unreachable_runner_is_a_connection_error(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(IsorunConnectionError) as caught:
            Isorun(url=f"http://127.0.0.1:{port}", api_key="k" * 32).network_profiles()
        self.assertEqual(caught.exception.code, "unreachable")
        self.assertIn("docker compose up", str(caught.exception))


class DownloadNames(unittest.TestCase):
    def test_only_plain_names_inside_the_root_are_accepted(self) -> None:
        with tempfile.TemporaryDirectory() as root:
            self.assertEqual(
                local_child(root, root, "a.txt", "/d/a.txt"), os.path.join(root, "a.txt")
            )
            self.assertEqual(local_child(root, root, "..x", "/d/..x"), os.path.join(root, "..x"))
            for name in ("", ".", "..", "../escape", "a/b", "/etc/passwd", "nul\0byte"):
                with self.assertRaises(IsorunFileError, msg=repr(name)) as caught:
                    local_child(root, root, name, f"/d/{name}")
                self.assertEqual(caught.exception.code, "unsafe-name")


if __name__ == "__main__":
    unittest.main()


class SecretsOnCreate(unittest.TestCase):
    """create(secrets=[...]) sends the names (never values) and reads them back."""

    def setUp(self) -> None:
        import json

        self.bodies: list = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                outer.bodies.append((self.path, body))
                answer = json.dumps(
                    {
                        "id": "sbx1",
                        "image": body["image"],
                        "status": "running",
                        "networkProfile": body.get("networkProfile", "default"),
                        "createdAt": "2026-01-01T00:00:00Z",
                        "proxyAddress": "10.0.0.2",
                        "secrets": body.get("secrets", []),
                    }
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.client = Isorun(url=url, api_key="k" * 32)

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def test_secret_names_go_to_the_runner_and_come_back(self) -> None:
        sbx = self.client.create(
            image="python:3.12-slim", network_profile="claude-code", secrets=["anthropic"]
        )
        self.assertEqual(self.bodies[0][0], "/v1/sandboxes")
        self.assertEqual(self.bodies[0][1]["secrets"], ["anthropic"])
        self.assertEqual(sbx.info.secrets, ["anthropic"])

    def test_without_secrets_the_field_is_not_sent(self) -> None:
        sbx = self.client.create(image="python:3.12-slim")
        self.assertNotIn("secrets", self.bodies[0][1])
        self.assertEqual(sbx.info.secrets, [])

    def test_bad_secrets_raise_before_any_request(self) -> None:
        with self.assertRaises(IsorunUsageError):
            self.client.create(image="x", secrets="anthropic")  # type: ignore[arg-type]
        with self.assertRaises(IsorunUsageError):
            self.client.create(image="x", secrets=[""])
        self.assertEqual(self.bodies, [])
