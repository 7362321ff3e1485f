import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArchivePage, RestoreJob } from '../api/client';
import { archiveCounts, archiveKey, jobProgress, restoreControl } from './archive';
// The backend's real answers for examples/captures/memcpy_heavy_v3 archived in radosgw (see the file's _comment).
import real from './fixtures/archive_memcpy_heavy_v3.json';

const readPage = real.page_read as unknown as ArchivePage;
const adminPage = real.page_admin as unknown as ArchivePage;
const restore = real.restore as unknown as RestoreJob[];
const again = real.restore_again as unknown as RestoreJob[];
const altered = real.restore_altered as unknown as RestoreJob[];
const cut = real.restore_cut_line as unknown as RestoreJob[];

const CAPTURE = join(__dirname, '../../../examples/captures/memcpy_heavy_v3');
const segments = readdirSync(CAPTURE).filter((n) => n.endsWith('.log'));
const records = segments.reduce((n, f) => n + readFileSync(join(CAPTURE, f), 'utf8').split('\n').filter((l) => l.trim()).length, 0);

describe('archive listing', () => {
  it('keys a row by host, app and session (an id may be archived under two of them)', () => {
    expect(readPage.items.map(archiveKey)).toEqual(['vm/memcpy_heavy/ujdyx2y3j73bkm4d']);
  });
  it('counts sessions in words, one and many', () => {
    expect(archiveCounts(readPage)).toEqual({ archived: '1 session', missing: '1 of them is not in the store and is' });
    expect(archiveCounts({ archived: 12_000, not_in_store: 0 })).toEqual({ archived: '12,000 sessions', missing: '0 of them are not in the store and are' });
  });
  it('the fixture is the capture: every segment archived', () => {
    expect(readPage.items[0].segments).toBe(segments.length);
  });
});

describe('Restore button', () => {
  it('is disabled for a key that may not restore, and says why', () => {
    expect(readPage.can_restore).toBe(false);
    expect(restoreControl(readPage.can_restore, undefined)).toEqual({ disabled: true, title: 'Needs an admin key' });
    // the reason stays the key's even while someone else's restore of the session runs
    expect(restoreControl(readPage.can_restore, restore[0])).toEqual({ disabled: true, title: 'Needs an admin key' });
  });
  it('is enabled for an admin key, except while the session is being restored', () => {
    expect(adminPage.can_restore).toBe(true);
    expect(restoreControl(adminPage.can_restore, undefined)).toEqual({ disabled: false, title: 'Re-ingest this session from the archive' });
    for (const j of restore.slice(0, -1)) expect(restoreControl(true, j)).toEqual({ disabled: true, title: 'A restore of this session is running' });
    expect(restoreControl(true, restore[restore.length - 1]).disabled).toBe(false);
    expect(restoreControl(true, altered[altered.length - 1]).disabled).toBe(false);
  });
});

describe('restore job progress', () => {
  it('says where a running job is, then every record it handled', () => {
    expect(restore.map(jobProgress)).toEqual([
      { state: 'running', text: 'Restoring: downloading; 0 records stored, 0 already held, 0 rejected' },
      { state: 'running', text: 'Restoring: 0 of 3 segments; 0 records stored, 0 already held, 0 rejected' },
      { state: 'running', text: 'Restoring: 1 of 3 segments; 135 records stored, 0 already held, 0 rejected' },
      { state: 'running', text: 'Restoring: 2 of 3 segments; 212 records stored, 0 already held, 0 rejected' },
      { state: 'done', text: 'Restored: 3 segments; 216 records stored, 0 already held, 0 rejected.' },
    ]);
    // nothing lost: the done job accounts for every record of the capture's segments
    const done = restore[restore.length - 1];
    expect(done.stored + done.duplicates + done.rejected).toBe(records);
  });
  it('a second restore stores nothing: every record is already held', () => {
    expect(jobProgress(again[again.length - 1])).toEqual({ state: 'done', text: `Restored: 3 segments; 0 records stored, ${records} already held, 0 rejected.` });
  });
  it('a failed job gives the backend reason and what it did before it stopped', () => {
    const failed = altered[altered.length - 1];
    expect(jobProgress(failed)).toEqual({
      state: 'failed',
      text:
        'Restore failed: s3://gpufl-archive/raw/vm/memcpy_heavy/ujdyx2y3j73bkm4d/vm.memcpy_heavy.ujdyx2y3j73bkm4d.scope.000000.log.gz: ' +
        'its bytes do not match the sha256 it was stored with. 0 records stored, 0 already held, 0 rejected before it stopped.',
    });
  });
  it('a done job with a refused record names it (the counts cover every record)', () => {
    const done = cut[cut.length - 1];
    expect(jobProgress(done)).toEqual({
      state: 'done',
      text:
        `Restored: 3 segments; 0 records stored, ${records - 1} already held, 1 rejected. ` +
        'First rejections: vm.memcpy_heavy.ujdyx2y3j73bkm4d.system.000000.log: record 2: malformed JSON: Input data was truncated.',
    });
    expect(restoreControl(true, done).disabled).toBe(false);
  });
});
