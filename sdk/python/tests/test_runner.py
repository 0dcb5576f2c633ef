"""The Python SDK against a real runner (the end-to-end suite runs this with the
compose stack up). Needs ISORUN_URL, ISORUN_API_KEY and ISORUN_TEST_IMAGE (an image
with /bin/sh, curl and coreutils); skipped without them."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unittest

from isorun import Isorun, IsorunFileError, Sandbox

IMAGE = os.environ.get("ISORUN_TEST_IMAGE")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@unittest.skipUnless(
    IMAGE and os.environ.get("ISORUN_URL"),
    "needs a runner: ISORUN_URL, ISORUN_API_KEY, ISORUN_TEST_IMAGE",
)
class AgainstTheRunner(unittest.TestCase):
    isorun: Isorun
    sbx: Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.isorun = Isorun()
        cls.sbx = cls.isorun.create(image=IMAGE, network_profile="claude-code")  # type: ignore[arg-type]

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sbx.destroy()

    def test_network_events_name_the_blocked_host(self) -> None:
        r = self.sbx.exec("curl -sS -m 5 https://random-site.com")
        self.assertNotEqual(r.exit_code, 0)
        self.assertIn("403", r.stderr)
        denied = self.sbx.network_events(action="deny")
        blocked = [e for e in denied if e.host == "random-site.com"]
        self.assertTrue(blocked, denied)
        self.assertEqual(blocked[0].action, "deny")
        self.assertEqual(blocked[0].reason, "not-in-allow-list")
        self.assertEqual(blocked[0].port, 443)
        self.assertEqual(blocked[0].profile, "claude-code")

    def test_suggest_profile_names_what_the_base_lacks(self) -> None:
        # The proxy refuses random-site.com before resolving it; the refusal is what is learned.
        self.sbx.exec("curl -sS -m 5 https://random-site.com")
        learned = self.sbx.suggest_profile(base="claude-code", name="learned-py")
        self.assertEqual(learned.name, "learned-py")
        self.assertIn("claude-code", learned.include)
        self.assertIn("random-site.com", [r["rule"] for r in learned.allow])
        self.assertIn("random-site.com", learned.yaml)
        assert learned.diff is not None
        self.assertIn("random-site.com", learned.diff["added"])

    def test_an_explicit_network_and_the_context_manager(self) -> None:
        with self.isorun.create(image=IMAGE, network={"allow": ["pypi.org"]}) as sbx:  # type: ignore[arg-type]
            self.assertEqual(sbx.info.network_profile, "custom")
            self.assertEqual(sbx.info.network, {"allow": ["pypi.org"]})
            self.assertIn(sbx.id, [s.id for s in self.isorun.list()])
        self.assertNotIn(sbx.id, [s.id for s in self.isorun.list()])
        sbx.destroy()  # twice is fine

    def test_spawn_streams_output_before_the_command_ends(self) -> None:
        # The command waits for a gate the test opens only after the first line: held-back
        # output would leave it waiting forever (and the test would fail on its timeout).
        proc = self.sbx.spawn(
            "echo first; i=0; while [ ! -e /tmp/py-gate ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo last",
            timeout_ms=120_000,
        )
        with proc:
            chunks = proc.stdout
            self.assertEqual(next(chunks), b"first\n")
            self.sbx.exec("touch /tmp/py-gate")
            self.assertEqual(b"".join(chunks), b"last\n")
            result = proc.wait()
        self.assertEqual((result.exit_code, result.timed_out), (0, False))

    def test_stdin_kill_and_timeout(self) -> None:
        proc = self.sbx.spawn("cat", stdin=True)
        data = os.urandom(100_000)
        proc.write(data)
        proc.end()
        self.assertEqual(sha256(b"".join(proc.stdout)), sha256(data))
        self.assertEqual(proc.wait().exit_code, 0)
        self.assertEqual(self.sbx.exec("wc -c", stdin="four").stdout, "4\n")

        proc = self.sbx.spawn("sleep 2001 & echo ready; wait")
        self.assertEqual(next(proc.stdout), b"ready\n")
        proc.kill()
        self.assertEqual(proc.wait().exit_code, 137)
        timed = self.sbx.exec("sleep 2002", timeout_ms=1500)
        self.assertTrue(timed.timed_out)
        self.assertEqual(timed.exit_code, 124)
        ps = self.sbx.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
        self.assertNotIn("sleep 200", ps.stdout)

    def test_files_round_trip_and_typed_errors(self) -> None:
        data = os.urandom(5 * 1024 * 1024 + 3)
        self.assertEqual(self.sbx.files.write("/py/data.bin", data), len(data))
        self.assertEqual(sha256(self.sbx.files.read("/py/data.bin")), sha256(data))  # type: ignore[arg-type]
        with self.sbx.files.read("/py/data.bin", format="stream") as stream:  # type: ignore[union-attr]
            self.assertEqual(sha256(stream.read()), sha256(data))
        self.sbx.files.write("/py/hello.txt", "hello\n", mode=0o600)
        self.assertEqual(self.sbx.files.read("/py/hello.txt", format="text"), "hello\n")
        entries = {e.name: e for e in self.sbx.files.list("/py")}
        self.assertEqual(sorted(entries), ["data.bin", "hello.txt"])
        self.assertEqual((entries["hello.txt"].type, entries["hello.txt"].mode), ("file", 0o600))
        self.sbx.files.remove("/py/hello.txt")
        with self.assertRaises(IsorunFileError) as caught:
            self.sbx.files.read("/py/hello.txt")
        self.assertEqual((caught.exception.code, caught.exception.status), ("not-found", 404))
        self.assertEqual(caught.exception.path, "/py/hello.txt")
        with self.assertRaises(IsorunFileError) as caught:
            self.sbx.files.read("/py")
        self.assertEqual(caught.exception.code, "is-a-directory")

    def test_upload_and_download_a_tree(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "source")
            os.makedirs(os.path.join(source, "a", "b", "c"))
            os.makedirs(os.path.join(source, "empty"))
            files = {
                "bin.dat": os.urandom(300_000),
                "a/empty.txt": b"",
                "a/b/all-bytes": bytes(range(256)),
                "a/b/c/ünï file.txt": "naïve\n".encode(),
            }
            for name, content in files.items():
                with open(os.path.join(source, name), "wb") as f:
                    f.write(content)
            os.symlink("/etc/passwd", os.path.join(source, "link"))
            up = self.sbx.files.upload(source, "/py-tree")
            self.assertEqual(
                (up.files, up.directories, up.skipped), (4, 4, [os.path.join(source, "link")])
            )
            self.sbx.exec("ln -s /etc /py-tree/a/etc-link && ln -s ../.. /py-tree/a/up")
            copy = os.path.join(tmp, "copy")
            down = self.sbx.files.download("/py-tree", copy)
            self.assertEqual((down.files, down.directories, down.bytes), (4, 4, up.bytes))
            self.assertEqual(sorted(down.skipped), ["/py-tree/a/etc-link", "/py-tree/a/up"])
            for name, content in files.items():
                with open(os.path.join(copy, name), "rb") as f:
                    self.assertEqual(f.read(), content, name)
            found = sorted(
                os.path.relpath(os.path.join(d, n), copy)
                for d, ds, fs in os.walk(copy)
                for n in ds + fs
            )
            self.assertEqual(
                found,
                [
                    "a",
                    "a/b",
                    "a/b/all-bytes",
                    "a/b/c",
                    "a/b/c/ünï file.txt",
                    "a/empty.txt",
                    "bin.dat",
                    "empty",
                ],
            )
            # Nothing was written beside the download directory.
            self.assertEqual(sorted(os.listdir(tmp)), ["copy", "source"])


if __name__ == "__main__":
    unittest.main()
