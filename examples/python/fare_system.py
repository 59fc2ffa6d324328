#!/usr/bin/env python3
"""A taxi fare system taking one fare through paygate.

1. CreatePaymentRequest: a push message to the rider's phone, a receipt, and consent to share the
   phone number. Always with an explicit `reference` and `idempotency_key`, so running this again
   for the same ride never creates a second payment (paygate returns the first one).
2. Waits on StreamPaymentEvents (resumed from the payment's CREATED event, so nothing between the
   create and the subscription is missed) until the payment is AUTHORIZED, or ends otherwise.
3. CapturePayment with its own idempotency key.
4. Waits (briefly) for PROFILE_SHARED and prints the shared number, masked.

Every call is retried on UNAVAILABLE / RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED with the same
request (same reference and keys), exponential backoff with jitter, at most --attempts times; it
is never retried on INVALID_ARGUMENT, FAILED_PRECONDITION or any other answer.

With --emulator URL (or PAYGATE_EMULATOR_URL) it plays the rider in paygate's built-in Vipps
emulator (POST {URL}/emulator/payments/{reference}/approve); without it, it waits for the real
customer to approve in the app.

Exit status: 0 captured; 1 the customer did not approve (ABORTED, EXPIRED, TERMINATED) or no answer
in time; 2 paygate refused a request (not retried); 3 gave up after retrying.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
import urllib.error
import urllib.request

import grpc

from paygate_client import (
    Backoff,
    GaveUp,
    RETRYABLE,
    Refused,
    call_with_retry,
    connect,
    event_line,
    event_name,
    log,
    mask_phone,
    payment_service_pb2 as ps,
    payment_service_pb2_grpc as ps_grpc,
    state_name,
    types_pb2 as t,
)

FINAL_NOT_AUTHORIZED = {"ABORTED", "EXPIRED", "TERMINATED"}
VAT_PERCENT = 12  # Norwegian VAT on passenger transport


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="the ride's payment reference: 8-50 of a-z A-Z 0-9 -")
    p.add_argument("--idempotency-key", help="of the create (default: the reference)")
    p.add_argument("--amount", type=int, default=35000, help="fare in minor units (default 35000 = NOK 350.00)")
    p.add_argument("--currency", default="NOK")
    p.add_argument("--phone", default=os.environ.get("PAYGATE_CUSTOMER_PHONE", "4791234567"),
                   help="rider's phone number, country code and digits (default 4791234567); "
                        "'' pushes to the number stored for --customer-key")
    p.add_argument("--customer-key", default="", help="your id of the rider; the shared number is stored under it")
    p.add_argument("--taxi", default="taxi-34", help="the taxi (receipt point of sale)")
    p.add_argument("--emulator", default=os.environ.get("PAYGATE_EMULATOR_URL", ""),
                   help="emulator base URL: approve as the rider there (default $PAYGATE_EMULATOR_URL)")
    p.add_argument("--wait-seconds", type=float, default=300, help="how long to wait for the customer")
    p.add_argument("--profile-wait-seconds", type=float, default=30,
                   help="how long to wait for PROFILE_SHARED after capture (0: do not wait)")
    p.add_argument("--attempts", type=int, default=6, help="calls per RPC at most, retries included")
    p.add_argument("--rpc-timeout", type=float, default=20, help="deadline of one unary call, seconds")
    a = p.parse_args()
    if not re.fullmatch(r"[a-zA-Z0-9-]{8,50}", a.reference):
        p.error("--reference: 8-50 characters of a-z A-Z 0-9 -")
    return a


def capture_key(reference: str) -> str:
    key = f"{reference}-capture"
    return key if len(key) <= 50 else "capture-" + hashlib.sha256(reference.encode()).hexdigest()[:40]


def receipt(args) -> t.Receipt:
    excl = round(args.amount * 100 / (100 + VAT_PERCENT))
    return t.Receipt(
        order_lines=[
            t.OrderLine(
                name="Taxi fare",
                id="fare",
                total_amount=args.amount,
                total_amount_excluding_tax=excl,
                total_tax_amount=args.amount - excl,
                tax_percentage=VAT_PERCENT,
            )
        ],
        bottom_line=t.BottomLine(currency=args.currency, pos_id=args.taxi, receipt_number=args.reference),
    )


def approve_in_emulator(base: str, reference: str) -> None:
    url = f"{base.rstrip('/')}/emulator/payments/{reference}/approve"
    log(f"rider: approving in the emulator (POST {url})")
    for attempt in range(1, 6):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=10) as r:
                r.read()
                return
        except urllib.error.HTTPError as e:
            # e.g. the payment is no longer CREATED: the event stream tells what happened.
            log(f"rider: the emulator refused the approval: HTTP {e.code} {e.read().decode(errors='replace')}")
            return
        except OSError as e:
            log(f"rider: emulator not reachable ({e}); retrying")
            time.sleep(0.5 * attempt)
    raise SystemExit("emulator not reachable")


class Events:
    """StreamPaymentEvents for one payment, resumed from a cursor after any retryable break."""

    def __init__(self, stub, metadata, reference: str, cursor: int, deadline: float, backoff=Backoff()):
        self.stub, self.metadata, self.reference = stub, metadata, reference
        self.cursor, self.deadline, self.backoff = cursor, deadline, backoff
        self.call = None
        self.it = None

    def _open(self):
        remaining = self.deadline - time.monotonic()
        req = ps.StreamPaymentEventsRequest(references=[self.reference], after_sequence=self.cursor)
        self.call = self.stub.StreamPaymentEvents(req, metadata=self.metadata, timeout=max(0.1, remaining))
        self.it = iter(self.call)

    def next_event(self):
        """The next event of the payment, or None when the deadline passes."""
        failures = 0
        while time.monotonic() < self.deadline:
            if self.it is None:
                self._open()
            try:
                item = next(self.it)
            except StopIteration:  # paygate ended the stream: resume after the cursor, not in a tight loop
                self.it = None
                failures += 1
                time.sleep(self.backoff.delay(failures))
                continue
            except grpc.RpcError as e:
                self.it = None
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() >= self.deadline - 0.2:
                    return None
                if e.code() not in RETRYABLE:
                    raise Refused("StreamPaymentEvents", e) from None
                failures += 1
                pause = self.backoff.delay(failures)
                log(f"StreamPaymentEvents: {e.code().name} ({e.details()}); reconnecting after sequence "
                    f"{self.cursor} in {pause:.2f}s")
                time.sleep(pause)
                continue
            failures = 0
            if item.HasField("heartbeat"):
                self.cursor = max(self.cursor, item.heartbeat.sequence)
                continue
            event = item.event
            if event.sequence <= self.cursor:
                continue
            self.cursor = event.sequence
            return event
        return None

    def wait_until(self, deadline: float):
        """A new deadline: the open stream (whose gRPC deadline is the old one) is reopened."""
        self.close()
        self.deadline = deadline

    def close(self):
        if self.call is not None:
            self.call.cancel()
        self.call = self.it = None


def main() -> int:
    args = parse_args()
    settings, channel = connect()
    payments = ps_grpc.PaymentServiceStub(channel)
    md = settings.metadata()
    retry = dict(metadata=md, attempts=args.attempts, timeout=args.rpc_timeout)
    ref = args.reference

    create = ps.CreatePaymentRequestRequest(
        reference=ref,
        idempotency_key=args.idempotency_key or ref,
        amount=t.Money(currency=args.currency, value=args.amount),
        user_flow=t.USER_FLOW_PUSH_MESSAGE,
        # Without a phone number paygate pushes to the number stored for customer_key.
        customer=t.Customer(phone_number=args.phone) if args.phone else None,
        profile_scopes=["phoneNumber"],
        payment_description=f"Taxi ride {args.taxi}",
        receipt=receipt(args),
        customer_key=args.customer_key,
        metadata={"taxi": args.taxi},
    )
    to = mask_phone(args.phone) if args.phone else f"the number stored for customer_key {args.customer_key!r}"
    log(f"create: {ref} {args.currency} {args.amount}, push to {to}, phone-number consent, receipt, "
        f"idempotency key {create.idempotency_key}")
    payment = call_with_retry(payments.CreatePaymentRequest, create, what="CreatePaymentRequest", **retry).payment
    log(f"created: {payment.reference} state={state_name(payment.state)}")

    # Where to resume the event stream from: the payment's events so far (the CREATED one at
    # least). A re-run for the same ride finds the events it already had here.
    listed = call_with_retry(payments.ListPaymentEvents, ps.ListPaymentEventsRequest(reference=ref),
                             what="ListPaymentEvents", **retry).events
    cursor = min((e.sequence for e in listed), default=1) - 1
    seen_names = set()
    deadline = time.monotonic() + args.wait_seconds
    events = Events(payments, md, ref, cursor, deadline)

    # A create sent again answers what the first one answered (CREATED); the events say whether
    # the rider has acted since.
    decided = {event_name(e.name) for e in listed} & ({"AUTHORIZED"} | FINAL_NOT_AUTHORIZED)
    if decided:
        log(f"this ride's payment exists already ({', '.join(sorted(decided))}); following its events")
    else:
        if args.emulator:
            approve_in_emulator(args.emulator, ref)
        else:
            log(f"waiting up to {args.wait_seconds:.0f}s for the rider to approve in the Vipps app")

    authorized = False
    while not authorized:
        event = events.next_event()
        if event is None:
            log(f"no answer from the rider within {args.wait_seconds:.0f}s; the payment stays as it is")
            return 1
        log(f"event: {event_line(event)}")
        name = event_name(event.name)
        seen_names.add(name)
        if name == "AUTHORIZED":
            authorized = True
        elif name in FINAL_NOT_AUTHORIZED:
            log(f"the rider did not pay: {name}")
            return 1

    capture = ps.CapturePaymentRequest(
        reference=ref, amount=t.Money(currency=args.currency, value=args.amount), idempotency_key=capture_key(ref)
    )
    log(f"capture: {ref} {args.currency} {args.amount}, idempotency key {capture.idempotency_key}")
    captured = call_with_retry(payments.CapturePayment, capture, what="CapturePayment", **retry).payment
    log(f"captured: {captured.aggregate.captured_amount.currency} {captured.aggregate.captured_amount.value}")

    if args.profile_wait_seconds > 0:
        events.wait_until(time.monotonic() + args.profile_wait_seconds)
        while "PROFILE_SHARED" not in seen_names:
            event = events.next_event()
            if event is None:
                log(f"no phone number shared within {args.profile_wait_seconds:.0f}s (it may still come)")
                break
            log(f"event: {event_line(event)}")
            seen_names.add(event_name(event.name))
            if event_name(event.name) == "PROFILE_SHARED":
                number = event.payment.phone_number
                log(f"rider shared phone number {mask_phone(number)}"
                    + (f"; stored for customer_key {args.customer_key}: the next ride can be pushed by it"
                       if args.customer_key else ""))
    events.close()
    log(f"done: {ref} captured")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        sys.exit(2)
    except GaveUp as e:
        print(f"gave up: {e}", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        sys.exit(130)
