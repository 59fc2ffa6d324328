#!/usr/bin/env python3
"""A resumable StreamPaymentEvents subscriber that survives being killed at any moment.

- Its cursor (the last sequence it is done with) is stored durably after each event it handles:
  written to a temporary file, fsynced, renamed over the old one, directory fsynced.
- Heartbeats are checkpoints: one carries the latest sequence the stream has passed, so the cursor
  moves on even while the filters match nothing.
- It reconnects with exponential backoff and jitter after UNAVAILABLE (paygate restarting or
  failing over), RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, a stream that ends, or a stream silent for
  longer than --idle-seconds; always with `after_sequence` = its cursor.
- It is idempotent by `sequence`: an event at or below the cursor is skipped. Delivery into this
  process is at-least-once (killed after handling an event, before saving the cursor, it gets that
  event again), so the handler is idempotent too: it records each sequence it handled in its
  journal (one JSON line, fsynced) and ignores one it has already recorded.
- Each event it handles is logged as one line: `handled seq=N REFERENCE NAME CUR AMOUNT state=S`.

Replace `handle()` with your own work; keep it idempotent by sequence.

Without a cursor file it starts from the beginning of the log (--start beginning, after_sequence
0) or with live events only (--start live). OUT_OF_RANGE (a cursor older than what paygate still
keeps) and other refusals stop it with exit status 2: that needs a person.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import grpc

from paygate_client import (
    RETRYABLE,
    Backoff,
    connect,
    describe_error,
    dumps,
    event_line,
    event_record,
    log,
    payment_service_pb2 as ps,
    payment_service_pb2_grpc as ps_grpc,
    types_pb2 as t,
)


class Cursor:
    """The last sequence this subscriber is done with, kept in a file that is replaced atomically."""

    def __init__(self, path: Path):
        self.path = path
        self.value = 0
        self.exists = False
        if path.exists():
            self.value = int(json.loads(path.read_text())["sequence"])
            self.exists = True

    def save(self, sequence: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(dumps({"sequence": sequence}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.value, self.exists = sequence, True


class Journal:
    """The handler's own record of what it did: one JSON line per handled event, appended and
    fsynced. It makes the handler idempotent: a sequence at or below the last one is not redone."""

    def __init__(self, path: Path):
        self.path = path
        self.last = 0
        if path.exists():
            data = path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):  # a line torn by a kill mid-write: drop it
                with open(path, "r+b") as f:
                    f.truncate(len(complete))
                    os.fsync(f.fileno())
            for line in complete.splitlines():
                if line.strip():
                    self.last = max(self.last, int(json.loads(line)["sequence"]))
        self.file = open(path, "ab")

    def record(self, record: dict) -> None:
        self.file.write((dumps(record) + "\n").encode())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.last = record["sequence"]


def handle(event, journal: Journal) -> bool:
    """The work done for one event. Returns False when it had been done already."""
    if event.sequence <= journal.last:
        return False
    journal.record(event_record(event))
    return True


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cursor-file", default=os.environ.get("PAYGATE_CURSOR_FILE", "subscriber.cursor"),
                   help="where the cursor is kept (default $PAYGATE_CURSOR_FILE or subscriber.cursor)")
    p.add_argument("--journal", default=os.environ.get("PAYGATE_JOURNAL_FILE", "subscriber.journal"),
                   help="the handler's record of handled events (default $PAYGATE_JOURNAL_FILE or subscriber.journal)")
    p.add_argument("--reference", action="append", default=[], help="only this payment (repeatable)")
    names = [n.removeprefix("PAYMENT_EVENT_NAME_") for n in t.PaymentEventName.keys() if not n.endswith("UNSPECIFIED")]
    p.add_argument("--name", action="append", default=[], type=str.upper, choices=names, metavar="NAME",
                   help=f"only this event name (repeatable): {', '.join(names)}")
    p.add_argument("--start", choices=["beginning", "live"], default="beginning",
                   help="without a cursor file: replay the whole log, or live events only")
    p.add_argument("--idle-seconds", type=float, default=60,
                   help="reconnect when nothing, not even a heartbeat, arrived for this long")
    return p.parse_args()


class Subscriber:
    def __init__(self, args):
        self.args = args
        self.settings, self.channel = connect()
        self.stub = ps_grpc.PaymentServiceStub(self.channel)
        self.cursor = Cursor(Path(args.cursor_file))
        self.journal = Journal(Path(args.journal))
        self.names = [t.PaymentEventName.Value("PAYMENT_EVENT_NAME_" + n) for n in args.name]
        self.stopping = threading.Event()
        self.call = None
        self.last_message = time.monotonic()
        self.idle_cancelled = False

    def request(self) -> ps.StreamPaymentEventsRequest:
        req = ps.StreamPaymentEventsRequest(references=self.args.reference, names=self.names)
        if self.cursor.exists:
            req.after_sequence = self.cursor.value
        elif self.args.start == "beginning":
            req.after_sequence = 0
        return req

    def watchdog(self):
        while not self.stopping.wait(1.0):
            call = self.call
            if call is not None and time.monotonic() - self.last_message > self.args.idle_seconds:
                log(f"stream silent for {self.args.idle_seconds:.0f}s; reconnecting")
                self.idle_cancelled = True
                call.cancel()

    def stop(self, *_):
        self.stopping.set()
        call = self.call
        if call is not None:
            call.cancel()

    def stream_once(self) -> bool:
        """One connection. Returns True if it received anything (the backoff starts over)."""
        req = self.request()
        where = f"after sequence {req.after_sequence}" if req.HasField("after_sequence") else "live only"
        log(f"subscribing {where}"
            + (f", references {list(req.references)}" if req.references else "")
            + (f", names {self.args.name}" if self.args.name else ""))
        self.last_message = time.monotonic()
        self.idle_cancelled = False
        self.call = self.stub.StreamPaymentEvents(req, metadata=self.settings.metadata())
        got = False
        try:
            for item in self.call:
                got = True
                self.last_message = time.monotonic()
                if item.HasField("heartbeat"):
                    seq = item.heartbeat.sequence
                    if seq > self.cursor.value:
                        self.cursor.save(seq)
                        log(f"checkpoint seq={seq} (heartbeat)")
                    continue
                event = item.event
                if event.sequence <= self.cursor.value:
                    log(f"skip seq={event.sequence} (at or below cursor {self.cursor.value})")
                    continue
                if handle(event, self.journal):
                    log(f"handled {event_line(event)}")
                else:
                    log(f"skip seq={event.sequence} (already handled)")
                self.cursor.save(event.sequence)
            log("stream ended by paygate")
        except grpc.RpcError as e:
            code = e.code()
            if self.stopping.is_set():
                return got
            if code == grpc.StatusCode.CANCELLED and self.idle_cancelled:
                return got
            if code not in RETRYABLE:
                log(f"StreamPaymentEvents refused: {describe_error(e)}")
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    log(f"cursor {self.cursor.value} is older than what paygate keeps: decide where to "
                        f"resume (delete {self.cursor.path} and use --start) after checking what was missed")
                raise SystemExit(2)
            log(f"stream broke: {code.name} ({e.details()})")
        finally:
            self.call = None
        return got

    def run(self) -> int:
        if self.cursor.exists or self.journal.last:
            log(f"resuming: cursor {self.cursor.value} ({self.cursor.path}), "
                f"last handled {self.journal.last} ({self.journal.path})")
        else:
            log(f"no cursor at {self.cursor.path}: starting {'from the beginning' if self.args.start == 'beginning' else 'live'}")
        threading.Thread(target=self.watchdog, daemon=True).start()
        backoff, failures = Backoff(base=0.5, cap=30.0), 0
        while not self.stopping.is_set():
            if self.stream_once():
                failures = 0
            if self.stopping.is_set():
                break
            failures += 1
            pause = backoff.delay(failures)
            log(f"reconnecting in {pause:.2f}s")
            self.stopping.wait(pause)
        log(f"stopped at cursor {self.cursor.value}")
        return 0


def main() -> int:
    sub = Subscriber(parse_args())
    signal.signal(signal.SIGTERM, sub.stop)
    signal.signal(signal.SIGINT, sub.stop)
    return sub.run()


if __name__ == "__main__":
    sys.exit(main())
