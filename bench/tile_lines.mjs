#!/usr/bin/env node
// bench/tile_lines: the JS builder's tiled session (frontend/e2e/harness.mjs: tilePlan + tiledLines, what
// buildTiledSession POSTs) written as NDJSON to a file instead of a backend, and its plan printed as JSON on
// stdout. tests/test_tile_session.py compares it with bench/tile_session.py's output, line for line.
//
//   node bench/tile_lines.mjs --capture DIR --kernels N [--overlay] --out FILE
//   node bench/tile_lines.mjs --js-numbers IN OUT   (each line of IN, a JSON number, as JSON.stringify writes it)
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { tiledLines, tilePlan } from '../frontend/e2e/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};

if (args.includes('--js-numbers')) {
  const i = args.indexOf('--js-numbers');
  const nums = readFileSync(args[i + 1], 'utf8').split('\n').filter(Boolean);
  writeFileSync(args[i + 2], nums.map((n) => JSON.stringify(Number(n))).join('\n') + '\n');
} else {
  const capture = opt('capture', null);
  const out = opt('out', null);
  if (!capture || !out) throw new Error('usage: tile_lines.mjs --capture DIR --kernels N [--overlay] --out FILE');
  const plan = tilePlan(capture, Number(opt('kernels', '0')), { overlay: args.includes('--overlay') });
  const fd = openSync(out, 'w');
  let chunk = [];
  for (const line of tiledLines(plan)) {
    chunk.push(line);
    if (chunk.length >= 10000) {
      writeSync(fd, chunk.join('\n') + '\n');
      chunk = [];
    }
  }
  if (chunk.length) writeSync(fd, chunk.join('\n') + '\n');
  closeSync(fd);
  console.log(JSON.stringify(plan.made));
}
