// Writes every ```mermaid block of a Markdown file to OUTDIR/block-N.mmd and prints
// "N LINE" per block (LINE: where the block starts in the Markdown file).
import { readFileSync, writeFileSync } from "node:fs";

const [file, outdir] = process.argv.slice(2);
const lines = readFileSync(file, "utf8").split("\n");
let block = null;
let n = 0;
lines.forEach((line, i) => {
  if (block === null) {
    const open = /^(\s*)(`{3,}|~{3,})\s*mermaid\s*$/.exec(line);
    if (open) block = { fence: open[2], start: i + 1, body: [] };
  } else if (line.trim().startsWith(block.fence) && line.trim().replace(/[`~]/g, "") === "") {
    n += 1;
    writeFileSync(`${outdir}/block-${n}.mmd`, block.body.join("\n") + "\n");
    console.log(`${n} ${block.start}`);
    block = null;
  } else {
    block.body.push(line);
  }
});
if (block !== null) {
  console.error(`${file}:${block.start}: mermaid block is never closed`);
  process.exit(1);
}
