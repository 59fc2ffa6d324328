// Connecting to paygate as its own tools do. Environment:
//   PAYGATE_ADDR      host:port (default 127.0.0.1:50051); http://host:port too; https://host:port means TLS
//   PAYGATE_TOKEN     sent as `authorization: Bearer <token>` on every call when set
//   PAYGATE_TLS_CA    PEM CA of paygate's certificate: turns TLS on
//   PAYGATE_TLS_CERT  PEM client certificate for mutual TLS (with PAYGATE_TLS_KEY)
//   PAYGATE_TLS_KEY   its PEM private key
import * as fs from "node:fs";
import * as grpc from "@grpc/grpc-js";

export class ConfigError extends Error {}

export interface Settings {
  target: string;
  tls: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  token?: string;
}

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): Settings {
  let addr = (env.PAYGATE_ADDR || "127.0.0.1:50051").trim();
  let scheme: "http" | "https" | undefined;
  for (const s of ["http", "https"] as const) {
    if (addr.startsWith(`${s}://`)) {
      scheme = s;
      addr = addr.slice(s.length + 3);
    }
  }
  addr = addr.replace(/\/+$/, "");
  if (!addr || addr.includes("/")) {
    throw new ConfigError(`PAYGATE_ADDR: expected host:port or http://host:port, got ${JSON.stringify(env.PAYGATE_ADDR)}`);
  }
  const ca = env.PAYGATE_TLS_CA || undefined;
  const cert = env.PAYGATE_TLS_CERT || undefined;
  const key = env.PAYGATE_TLS_KEY || undefined;
  if (!!cert !== !!key) {
    throw new ConfigError("PAYGATE_TLS_CERT and PAYGATE_TLS_KEY go together (mutual TLS needs both)");
  }
  const tls = scheme === "https" || !!(ca || cert);
  if (scheme === "http" && tls) {
    throw new ConfigError("PAYGATE_ADDR says http:// (plaintext) but PAYGATE_TLS_* is set; use https:// or host:port");
  }
  for (const [name, path] of [["PAYGATE_TLS_CA", ca], ["PAYGATE_TLS_CERT", cert], ["PAYGATE_TLS_KEY", key]]) {
    if (path && !fs.existsSync(path)) throw new ConfigError(`${name}: no such file: ${path}`);
  }
  return { target: addr, tls, ca, cert, key, token: env.PAYGATE_TOKEN || undefined };
}

export function describe(s: Settings): string {
  let how = "plaintext";
  if (s.tls) {
    how = `TLS, CA ${s.ca ?? "system roots"}`;
    if (s.cert) how += `, client certificate ${s.cert}`;
  }
  return `${s.target} (${how}; token: ${s.token ? "set" : "none"})`;
}

export function credentials(s: Settings): grpc.ChannelCredentials {
  if (!s.tls) return grpc.credentials.createInsecure();
  const read = (p?: string) => (p ? fs.readFileSync(p) : null);
  return grpc.credentials.createSsl(read(s.ca), read(s.key), read(s.cert));
}

export function metadata(s: Settings): grpc.Metadata {
  const md = new grpc.Metadata();
  if (s.token) md.set("authorization", `Bearer ${s.token}`);
  return md;
}

export const channelOptions: grpc.ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
};
