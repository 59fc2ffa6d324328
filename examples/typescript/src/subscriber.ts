// A resumable StreamPaymentEvents subscriber that survives being killed at any moment; the same
// behaviour, files and log lines as examples/python/subscriber.py:
// - the cursor (last sequence done with) is saved durably after each handled event
//   (temp file + fsync + rename + directory fsync);
// - heartbeats are checkpoints (each carries the latest sequence the stream has passed);
// - reconnects with exponential backoff and jitter, always with after_sequence = the cursor;
// - idempotent by sequence: events at or below the cursor are skipped, and the handler records
//   each sequence in its journal and ignores one it already recorded (delivery into this process
//   is at-least-once: killed between handling and saving the cursor, it gets that event again);
// - logs each handled event as one line: `handled seq=N REFERENCE NAME CUR AMOUNT state=S`.
// Replace handle() with your own work; keep it idempotent by sequence.
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType } from "./generated/payment_service";
import type { PaymentEvent__Output } from "./generated/paygate/v1/PaymentEvent";
import type { StreamPaymentEventsRequest } from "./generated/paygate/v1/StreamPaymentEventsRequest";
import type { StreamPaymentEventsResponse__Output } from "./generated/paygate/v1/StreamPaymentEventsResponse";
import type { PaymentServiceClient } from "./generated/paygate/v1/PaymentService";
import { ConfigError, channelOptions, credentials, describe, metadata, settingsFromEnv } from "./settings";
import { Cursor, Journal } from "./state";

const log = (msg: string) => process.stdout.write(msg + "\n");

// Refusals that reconnecting does not change: a person has to act. Anything else reconnects.
const FATAL = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
]);

const short = (name: string, prefix: string) => name.replace(prefix, "");

export function eventLine(e: PaymentEvent__Output): string {
  const amount = e.amount ? ` ${e.amount.currency} ${e.amount.value}` : "";
  const state = e.payment ? short(String(e.payment.state), "PAYMENT_STATE_") : "?";
  return `seq=${e.sequence} ${e.reference} ${short(String(e.name), "PAYMENT_EVENT_NAME_")}${amount} state=${state}`;
}

/** The work done for one event. Returns false when it had been done already. */
function handle(e: PaymentEvent__Output, journal: Journal): boolean {
  const seq = BigInt(e.sequence);
  if (seq <= journal.last) return false;
  journal.record({
    sequence: seq,
    reference: e.reference,
    name: short(String(e.name), "PAYMENT_EVENT_NAME_"),
    amount: e.amount ? String(e.amount.value) : null,
    currency: e.amount ? e.amount.currency : null,
  });
  return true;
}

function backoff(failures: number, base = 0.5, cap = 30): number {
  const bound = Math.min(cap, base * 2 ** Math.max(0, failures - 1));
  return bound / 2 + Math.random() * (bound / 2);
}

function main(): void {
  const { values } = parseArgs({
    options: {
      "cursor-file": { type: "string", default: process.env.PAYGATE_CURSOR_FILE || "subscriber.cursor" },
      journal: { type: "string", default: process.env.PAYGATE_JOURNAL_FILE || "subscriber.journal" },
      reference: { type: "string", multiple: true, default: [] },
      name: { type: "string", multiple: true, default: [] },
      start: { type: "string", default: "beginning" },
      "idle-seconds": { type: "string", default: "60" },
      "proto-dir": { type: "string", default: process.env.PAYGATE_PROTO_DIR || path.resolve(__dirname, "../../../proto") },
    },
  });
  if (values.start !== "beginning" && values.start !== "live") {
    console.error("--start: beginning or live");
    process.exit(2);
  }
  let settings;
  try {
    settings = settingsFromEnv();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`configuration: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  log(`paygate: ${describe(settings)}`);

  const definition = protoLoader.loadSync("paygate/v1/payment_service.proto", {
    includeDirs: [values["proto-dir"]!],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const proto = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  const client: PaymentServiceClient = new proto.paygate.v1.PaymentService(
    settings.target,
    credentials(settings),
    channelOptions,
  );
  const md = metadata(settings);
  // The enum's names, from the loaded proto (an EnumDescriptorProto).
  const enumType = (definition["paygate.v1.PaymentEventName"] as protoLoader.EnumTypeDefinition).type as {
    value: { name: string }[];
  };
  const known = enumType.value.map((v) => v.name).filter((n) => !n.endsWith("UNSPECIFIED"));
  const names = values.name!.map((n) => "PAYMENT_EVENT_NAME_" + short(n.toUpperCase(), "PAYMENT_EVENT_NAME_"));
  for (const n of names) {
    if (!known.includes(n)) {
      console.error(`--name: one of ${known.map((k) => short(k, "PAYMENT_EVENT_NAME_")).join(", ")}`);
      process.exit(2);
    }
  }
  const idleMs = Number(values["idle-seconds"]) * 1000;
  if (!(idleMs > 0)) {
    console.error("--idle-seconds: a positive number");
    process.exit(2);
  }
  const cursor = new Cursor(values["cursor-file"]!);
  const journal = new Journal(values.journal!);

  if (cursor.exists || journal.last > 0n) {
    log(`resuming: cursor ${cursor.value} (${cursor.file}), last handled ${journal.last} (${journal.file})`);
  } else {
    log(`no cursor at ${cursor.file}: starting ${values.start === "beginning" ? "from the beginning" : "live"}`);
  }

  let call: grpc.ClientReadableStream<StreamPaymentEventsResponse__Output> | undefined;
  let stopping = false;
  let failures = 0;
  let lastMessage = Date.now();
  let idleCancelled = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const watchdog = setInterval(() => {
    if (call && Date.now() - lastMessage > idleMs) {
      log(`stream silent for ${idleMs / 1000}s; reconnecting`);
      idleCancelled = true;
      call.cancel();
    }
  }, 1000);

  const stop = () => {
    if (stopping) return;
    stopping = true;
    clearInterval(watchdog);
    if (retryTimer) clearTimeout(retryTimer);
    call?.cancel();
    log(`stopped at cursor ${cursor.value}`);
    client.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  const reconnect = () => {
    if (stopping) return;
    failures += 1;
    const pause = backoff(failures);
    log(`reconnecting in ${pause.toFixed(2)}s`);
    retryTimer = setTimeout(subscribe, pause * 1000);
  };

  function subscribe(): void {
    const req: StreamPaymentEventsRequest = { references: values.reference!, names: names as never };
    if (cursor.exists) req.afterSequence = cursor.value.toString();
    else if (values.start === "beginning") req.afterSequence = "0";
    log(
      `subscribing ${req.afterSequence !== undefined ? `after sequence ${req.afterSequence}` : "live only"}` +
        (values.reference!.length ? `, references ${JSON.stringify(values.reference)}` : "") +
        (values.name!.length ? `, names ${JSON.stringify(values.name)}` : ""),
    );
    lastMessage = Date.now();
    idleCancelled = false;
    let finished = false;
    const thisCall = client.StreamPaymentEvents(req, md);
    call = thisCall;
    const finish = (why: () => void) => {
      if (finished) return;
      finished = true;
      if (call === thisCall) call = undefined;
      why();
    };

    thisCall.on("data", (item: StreamPaymentEventsResponse__Output) => {
      // Everything here is synchronous: the event is handled and the cursor saved before the next one.
      failures = 0;
      lastMessage = Date.now();
      if (item.heartbeat) {
        const seq = BigInt(item.heartbeat.sequence);
        if (seq > cursor.value) {
          cursor.save(seq);
          log(`checkpoint seq=${seq} (heartbeat)`);
        }
        return;
      }
      const e = item.event;
      if (!e) return;
      const seq = BigInt(e.sequence);
      if (seq <= cursor.value) {
        log(`skip seq=${seq} (at or below cursor ${cursor.value})`);
        return;
      }
      if (handle(e, journal)) log(`handled ${eventLine(e)}`);
      else log(`skip seq=${seq} (already handled)`);
      cursor.save(seq);
    });
    thisCall.on("end", () =>
      finish(() => {
        log("stream ended by paygate");
        reconnect();
      }),
    );
    thisCall.on("error", (err: grpc.ServiceError) =>
      finish(() => {
        if (stopping) return;
        if (err.code === grpc.status.CANCELLED && idleCancelled) return reconnect();
        if (FATAL.has(err.code)) {
          log(`StreamPaymentEvents refused: ${grpc.status[err.code]}: ${err.details}`);
          if (err.code === grpc.status.OUT_OF_RANGE) {
            log(
              `cursor ${cursor.value} is older than what paygate keeps: decide where to resume ` +
                `(delete ${cursor.file} and use --start) after checking what was missed`,
            );
          }
          process.exit(2);
        }
        log(`stream broke: ${grpc.status[err.code]} (${err.details})`);
        reconnect();
      }),
    );
  }

  subscribe();
}

if (require.main === module) main();
