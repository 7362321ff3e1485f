// @vitest-environment node
// The committed wire types must match the backend's OpenAPI document (run `npm run gen:api` after an API change).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const python = process.env.GPUFL_PYTHON ?? resolve(root, '../.venv/bin/python');

describe('schema.d.ts', () => {
  it.skipIf(!existsSync(python))('matches what openapi-typescript generates from the backend now', () => {
    let out = '';
    let code = 0;
    try {
      out = execFileSync(process.execPath, [resolve(root, 'scripts/gen-api.mjs'), '--check'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      code = err.status;
      out = err.stdout + err.stderr;
    }
    expect(out).toContain('matches the backend OpenAPI document');
    expect(code).toBe(0);
  }, 60_000);
});
