/** What the Archive view (#23) says about archived sessions and restore jobs: pure, so it is tested alone. */
import type { ArchivedSession, ArchivePage, RestoreJob } from '../api/client';
import { fmtInt } from './format';

/** A session is archived under host/app/session: the same id may appear under two hosts or apps. */
export function archiveKey(s: Pick<ArchivedSession, 'host' | 'app' | 'session_id'>): string {
  return `${s.host}/${s.app}/${s.session_id}`;
}

function count(n: number, one: string, many: string): string {
  return `${fmtInt(n)} ${n === 1 ? one : many}`;
}

/** The head of the listing: how many sessions the archive holds, and how many of them the store lacks. */
export function archiveCounts(page: Pick<ArchivePage, 'archived' | 'not_in_store'>): { archived: string; missing: string } {
  return {
    archived: count(page.archived, 'session', 'sessions'),
    missing: page.not_in_store === 1 ? '1 of them is not in the store and is' : `${fmtInt(page.not_in_store)} of them are not in the store and are`,
  };
}

/** The Restore button: disabled, with the reason as its title, for a key that may not restore or while the
 * session's restore runs. */
export function restoreControl(canRestore: boolean, job: RestoreJob | undefined): { disabled: boolean; title: string } {
  if (!canRestore) return { disabled: true, title: 'Needs an admin key' };
  if (job?.status === 'running') return { disabled: true, title: 'A restore of this session is running' };
  return { disabled: false, title: 'Re-ingest this session from the archive' };
}

export type JobState = 'running' | 'done' | 'failed';

/** A restore job in words: where it is, and every record it handled (stored, already held, rejected). */
export function jobProgress(job: RestoreJob): { state: JobState; text: string } {
  const counts = `${count(job.stored, 'record', 'records')} stored, ${fmtInt(job.duplicates)} already held, ${fmtInt(job.rejected)} rejected`;
  if (job.status === 'running') {
    const where = job.segments ? `${fmtInt(job.segments_done)} of ${count(job.segments, 'segment', 'segments')}` : 'downloading';
    return { state: 'running', text: `Restoring: ${where}; ${counts}` };
  }
  if (job.status === 'failed') return { state: 'failed', text: `Restore failed: ${job.reason ?? 'no reason given'}. ${counts} before it stopped.` };
  const notes = job.notes.length ? ` First rejections: ${job.notes.join('; ')}.` : '';
  return { state: 'done', text: `Restored: ${count(job.segments, 'segment', 'segments')}; ${counts}.${notes}` };
}
