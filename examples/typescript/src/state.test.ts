// Offline tests of the settings and the durable state (npm test; no paygate needed).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Cursor, Journal } from "./state";
import { ConfigError, metadata, settingsFromEnv } from "./settings";

const tmpdir = () => fs.mkdtempSync(path.join(os.tmpdir(), "paygate-ts-"));

test("cursor is saved atomically and read back", () => {
  const dir = tmpdir();
  const file = path.join(dir, "c.cursor");
  assert.equal(new Cursor(file).exists, false);
  new Cursor(file).save(41n);
  const c = new Cursor(file);
  assert.deepEqual([c.exists, c.value], [true, 41n]);
  c.save(18446744073709551615n); // u64 max survives (no float)
  assert.equal(new Cursor(file).value, 18446744073709551615n);
  assert.deepEqual(fs.readdirSync(dir), ["c.cursor"]);
});

test("journal drops a torn line and remembers the last sequence", () => {
  const file = path.join(tmpdir(), "j.journal");
  const j = new Journal(file);
  j.record({ sequence: 5n, reference: "r-0000001", name: "CREATED", amount: "100", currency: "NOK" });
  fs.appendFileSync(file, '{"sequence":6');
  const j2 = new Journal(file);
  assert.equal(j2.last, 5n);
  assert.deepEqual(fs.readFileSync(file, "utf8").split("\n"), [
    '{"amount":100,"currency":"NOK","name":"CREATED","reference":"r-0000001","sequence":5}',
    "",
  ]);
});

test("settings from the environment", () => {
  assert.equal(settingsFromEnv({}).target, "127.0.0.1:50051");
  const s = settingsFromEnv({ PAYGATE_ADDR: "http://paygate:50051/" });
  assert.deepEqual([s.target, s.tls], ["paygate:50051", false]);
  assert.equal(settingsFromEnv({ PAYGATE_ADDR: "https://paygate:443" }).tls, true);
  assert.deepEqual(metadata(settingsFromEnv({ PAYGATE_TOKEN: "t".repeat(16) })).get("authorization"), [
    "Bearer " + "t".repeat(16),
  ]);
  assert.throws(() => settingsFromEnv({ PAYGATE_TLS_CERT: __filename }), ConfigError);
  assert.throws(() => settingsFromEnv({ PAYGATE_ADDR: "http://x:1", PAYGATE_TLS_CA: __filename }), ConfigError);
  assert.throws(() => settingsFromEnv({ PAYGATE_TLS_CA: "/nonexistent.pem" }), ConfigError);
});
