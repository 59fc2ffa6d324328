// The subscriber's durable state: the cursor (replaced atomically) and the handler's journal.
import * as fs from "node:fs";
import * as path from "node:path";

// JSON.parse would turn a u64 above 2^53 into an inexact float: read the digits themselves.
function sequenceOf(json: string): bigint {
  const m = /"sequence"\s*:\s*"?(\d+)"?/.exec(json);
  if (!m) throw new Error(`no sequence in ${JSON.stringify(json)}`);
  return BigInt(m[1]);
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The last sequence this subscriber is done with. Saved as temp file + fsync + rename + dir fsync. */
export class Cursor {
  value = 0n;
  exists = false;

  constructor(readonly file: string) {
    if (fs.existsSync(file)) {
      this.value = sequenceOf(fs.readFileSync(file, "utf8"));
      this.exists = true;
    }
  }

  save(sequence: bigint): void {
    const tmp = `${this.file}.tmp`;
    const fd = fs.openSync(tmp, "w");
    try {
      fs.writeSync(fd, `{"sequence":${sequence}}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
    fsyncDir(path.dirname(path.resolve(this.file)));
    this.value = sequence;
    this.exists = true;
  }
}

export interface JournalRecord {
  sequence: bigint;
  reference: string;
  name: string;
  amount: string | null;
  currency: string | null;
}

/** The handler's record of what it did: one JSON line per handled event, appended and fsynced.
 *  A sequence at or below the last recorded one is not done again (the handler is idempotent). */
export class Journal {
  last = 0n;
  private fd: number;

  constructor(readonly file: string) {
    if (fs.existsSync(file)) {
      const data = fs.readFileSync(file);
      const complete = data.subarray(0, data.lastIndexOf(0x0a) + 1);
      if (complete.length !== data.length) {
        // A line torn by a kill mid-write: drop it.
        fs.truncateSync(file, complete.length);
      }
      for (const line of complete.toString("utf8").split("\n")) {
        if (line.trim()) {
          const seq = sequenceOf(line);
          if (seq > this.last) this.last = seq;
        }
      }
    }
    this.fd = fs.openSync(file, "a");
  }

  record(r: JournalRecord): void {
    // The same JSON as the Python example's journal (keys sorted, no spaces).
    const amount = r.amount === null ? "null" : String(BigInt(r.amount));
    const line =
      `{"amount":${amount},"currency":${JSON.stringify(r.currency)},"name":${JSON.stringify(r.name)},` +
      `"reference":${JSON.stringify(r.reference)},"sequence":${r.sequence}}\n`;
    fs.writeSync(this.fd, line);
    fs.fsyncSync(this.fd);
    this.last = r.sequence;
  }
}
