"""Offline tests of the examples' retry policy, settings and durable cursor (no paygate needed):
python -m unittest test_examples"""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import grpc

from paygate_client import Backoff, ConfigError, GaveUp, Refused, Settings, call_with_retry
from subscriber import Cursor, Journal, handle


class FakeError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return f"fake {self._code.name}"

    def trailing_metadata(self):
        return ()


class FakeMethod:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.requests = []

    def __call__(self, request, timeout=None, metadata=None):
        self.requests.append(request)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, grpc.StatusCode):
            raise FakeError(outcome)
        return outcome


def call(method, **kw):
    return call_with_retry(method, "the-request", what="Test", sleep=lambda _: None, say=lambda _: None, **kw)


class RetryTest(unittest.TestCase):
    def test_retries_transient_codes_with_the_same_request(self):
        for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.DEADLINE_EXCEEDED):
            m = FakeMethod(code, code, "ok")
            self.assertEqual(call(m), "ok")
            self.assertEqual(m.requests, ["the-request"] * 3)

    def test_never_retries_answers(self):
        for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                     grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED,
                     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ALREADY_EXISTS):
            m = FakeMethod(code, "ok")
            with self.assertRaises(Refused):
                call(m)
            self.assertEqual(len(m.requests), 1, code)

    def test_bounded(self):
        m = FakeMethod(*[grpc.StatusCode.UNAVAILABLE] * 10)
        with self.assertRaises(GaveUp):
            call(m, attempts=4)
        self.assertEqual(len(m.requests), 4)

    def test_backoff_grows_with_jitter_and_is_capped(self):
        b = Backoff(base=1.0, cap=4.0)
        for failures, (lo, hi) in {1: (0.5, 1.0), 2: (1.0, 2.0), 3: (2.0, 4.0), 9: (2.0, 4.0)}.items():
            for _ in range(50):
                self.assertTrue(lo <= b.delay(failures) <= hi)


class SettingsTest(unittest.TestCase):
    def test_addresses(self):
        self.assertEqual(Settings.from_env({}).target, "127.0.0.1:50051")
        s = Settings.from_env({"PAYGATE_ADDR": "http://paygate:50051/"})
        self.assertEqual((s.target, s.tls), ("paygate:50051", False))
        self.assertTrue(Settings.from_env({"PAYGATE_ADDR": "https://paygate:443"}).tls)
        self.assertEqual(Settings.from_env({"PAYGATE_TOKEN": "t" * 16}).metadata(),
                         (("authorization", "Bearer " + "t" * 16),))

    def test_tls_settings(self):
        with tempfile.NamedTemporaryFile() as f:
            s = Settings.from_env({"PAYGATE_TLS_CA": f.name})
            self.assertTrue(s.tls)
            with self.assertRaises(ConfigError):
                Settings.from_env({"PAYGATE_TLS_CERT": f.name})  # key missing
            with self.assertRaises(ConfigError):
                Settings.from_env({"PAYGATE_ADDR": "http://x:1", "PAYGATE_TLS_CA": f.name})
        with self.assertRaises(ConfigError):
            Settings.from_env({"PAYGATE_TLS_CA": "/nonexistent.pem"})


class CursorTest(unittest.TestCase):
    def test_cursor_survives_and_replaces_atomically(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "c.cursor"
            self.assertFalse(Cursor(path).exists)
            Cursor(path).save(41)
            c = Cursor(path)
            self.assertEqual((c.exists, c.value), (True, 41))
            c.save(42)
            self.assertEqual(Cursor(path).value, 42)
            self.assertEqual(os.listdir(d), ["c.cursor"])  # no temporary left behind

    def test_journal_is_idempotent_and_drops_a_torn_line(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "j.journal"
            j = Journal(path)
            ev = lambda seq: SimpleNamespace(sequence=seq)  # noqa: E731
            with mock.patch("subscriber.event_record", lambda e: {"sequence": e.sequence}):
                self.assertTrue(handle(ev(5), j))
                self.assertFalse(handle(ev(5), j))
                self.assertFalse(handle(ev(4), j))
                with open(path, "ab") as f:
                    f.write(b'{"sequence":6')  # killed mid-write
                j2 = Journal(path)
                self.assertEqual(j2.last, 5)
                self.assertTrue(handle(ev(6), j2))
            self.assertEqual(path.read_text().splitlines(), ['{"sequence":5}', '{"sequence":6}'])


if __name__ == "__main__":
    unittest.main()
