/**
 * The copy inspector's rows: what a performance engineer asks of a copy — which way, how much, how fast,
 * from and to what memory (a copy from or to pageable host memory is staged through a pinned buffer: the point of pinned),
 * on which stream, in which scope, and whether the calling thread waited. A field the record lacks says
 * "not reported" rather than vanish.
 */
import type { MemcpyRow, ScopeInstance } from '../api/client';
import { fmtBytes, fmtDur } from './format';

export interface CopyField {
  key: string;
  label: string;
  value: string;
}

const NOT = 'not reported';

const DIRECTIONS: Record<string, string> = {
  HtoD: 'host → device',
  DtoH: 'device → host',
  DtoD: 'device → device',
  HtoH: 'host → host',
  PtoP: 'peer → peer (GPU to GPU)',
  memset: 'memset (device memory filled)',
};

/** The copy's memory kinds in words, with what they mean for speed. */
export function memoryKinds(src: string | null, dst: string | null): string {
  if (!src || !dst || (src === 'unknown' && dst === 'unknown')) return NOT;
  const pageable = src === 'Pageable' || dst === 'Pageable';
  return `${src} → ${dst}${pageable ? ' (pageable: staged through a pinned buffer by the driver)' : ''}`;
}

export function copyFields(c: MemcpyRow, scope: ScopeInstance | null, deviceName: string | null): CopyField[] {
  const isSet = c.copyKind === 'memset';
  const rows: CopyField[] = [
    { key: 'direction', label: 'Direction', value: `${c.copyKind} — ${DIRECTIONS[c.copyKind] ?? c.copyKind}` },
    { key: 'bytes', label: 'Bytes', value: `${fmtBytes(c.bytes)} (${c.bytes.toLocaleString('en-US')} B)` },
    { key: 'duration', label: 'Duration', value: fmtDur(c.dur) },
  ];
  if (!isSet) {
    rows.push(
      { key: 'throughput', label: 'Throughput', value: c.throughput === null ? NOT : `${c.throughput.toFixed(2)} GB/s` },
      { key: 'memory', label: 'Memory', value: memoryKinds(c.srcKind, c.dstKind) },
      { key: 'mode', label: 'Mode', value: c.mode === 'sync' ? 'sync — the calling thread waited for it' : c.mode === 'async' ? 'async' : `${NOT} (before contract v3)` },
    );
  }
  rows.push(
    { key: 'stream', label: 'GPU · stream', value: `GPU ${c.device}${deviceName ? ` (${deviceName})` : ''} · stream ${c.stream}` },
    { key: 'scope', label: 'Scope', value: scope ? scope.path : c.scopeInst === null ? 'none (outside every scope)' : `instance ${c.scopeInst}` },
    { key: 'start', label: 'Start', value: `${fmtDur(c.start)} after session start` },
  );
  if (!isSet) {
    rows.push(
      { key: 'thread', label: 'Calling thread', value: c.threadId === null ? NOT : String(c.threadId) },
      { key: 'api', label: 'Copy call', value: c.apiStart === null ? NOT : `entered ${fmtDur(c.start - c.apiStart)} before the copy started${c.apiDur === null ? '' : `, took ${fmtDur(c.apiDur)}`}` },
    );
  }
  rows.push({ key: 'corr', label: 'Correlation id', value: String(c.corrId) });
  return rows;
}
