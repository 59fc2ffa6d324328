#!/usr/bin/env python3
"""Prints every event paygate recorded for the given payments (ListPaymentEvents), one JSON line
each, in the subscriber journal's format: what a subscriber should have handled."""

from __future__ import annotations

import argparse
import sys

from paygate_client import (
    GaveUp,
    Refused,
    call_with_retry,
    dumps,
    event_record,
    payment_service_pb2 as ps,
    payment_service_pb2_grpc as ps_grpc,
    Settings,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("reference", nargs="+")
    args = p.parse_args()
    settings = Settings.from_env()
    print(f"paygate: {settings.describe()}", file=sys.stderr)
    stub = ps_grpc.PaymentServiceStub(settings.channel())
    records = []
    for ref in args.reference:
        events = call_with_retry(stub.ListPaymentEvents, ps.ListPaymentEventsRequest(reference=ref),
                                 what=f"ListPaymentEvents {ref}", metadata=settings.metadata(),
                                 say=lambda m: print(m, file=sys.stderr)).events
        records += [event_record(e) for e in events]
    for r in sorted(records, key=lambda r: r["sequence"]):
        print(dumps(r))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Refused, GaveUp) as e:
        print(e, file=sys.stderr)
        sys.exit(2)
