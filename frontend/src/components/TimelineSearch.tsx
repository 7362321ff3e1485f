/**
 * Search across the timeline's lanes: kernels (by name) and scopes / NVTX ranges (by path) whose name
 * contains the text, case-insensitive (GET /search). Enter or ▶ goes to the next instance after the current
 * one (or after the window's left edge), Shift+Enter or ◀ to the previous, in (start, kind, id) order so
 * instances that start together are each visited once; each hit is zoomed to.
 */
import { useState } from 'react';
import type { Api, SearchMatch, SessionDetail } from '../api/client';
import { describeError } from '../api/http';
import { fmtDur, fmtInt } from '../lib/format';
import { shortKernelName } from '../lib/inspector';

export function TimelineSearch({
  api,
  session,
  windowStart,
  onMatch,
}: {
  api: Api;
  session: SessionDetail;
  /** The timeline's left edge (ns from the session start): where a new search starts. */
  windowStart: () => number;
  onMatch: (m: SearchMatch) => void;
}) {
  const [text, setText] = useState('');
  const [cur, setCur] = useState<{ text: string; match: SearchMatch } | null>(null);
  const [status, setStatus] = useState('');

  async function go(direction: 'next' | 'prev') {
    const q = text.trim();
    if (!q) return;
    // from the current hit when still searching the same text (past it, so hits that start at the same ns
    // are each visited once), else from the window's left edge
    const from = cur && cur.text === q ? cur.match : null;
    const at = from ? from.start : direction === 'next' ? windowStart() - 1 : windowStart();
    setStatus('Searching…');
    try {
      const r = await api.search(session, q, at, direction, from ? { kind: from.kind, id: from.id } : undefined);
      const total = `${fmtInt(r.kernels)} kernel${r.kernels === 1 ? '' : 's'}, ${fmtInt(r.scopes)} scope instance${r.scopes === 1 ? '' : 's'} match`;
      if (!r.match) {
        setStatus(`${total} · no ${direction === 'next' ? 'later' : 'earlier'} one`);
        return;
      }
      setCur({ text: q, match: r.match });
      const m = r.match;
      const what = m.kind === 'kernel' ? shortKernelName(m.name ?? '(unnamed)') : `scope ${m.name ?? ''}`;
      setStatus(`${total} · ${what} at +${fmtDur(m.start)}`);
      onMatch(m);
    } catch (e) {
      setStatus(`⚠ ${describeError(e)}`);
    }
  }

  return (
    <div className="timeline-search" data-testid="timeline-search">
      <input
        type="search"
        aria-label="Search the timeline"
        placeholder="Search kernels and scopes…"
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          setCur(null);
        }}
        onKeyDown={(e) => {
          if (e.key === 'Enter') {
            e.preventDefault();
            void go(e.shiftKey ? 'prev' : 'next');
          }
        }}
      />
      <button className="link" aria-label="Previous match" onClick={() => void go('prev')}>
        ◀
      </button>
      <button className="link" aria-label="Next match" onClick={() => void go('next')}>
        ▶
      </button>
      <span className="muted small" role="status" data-testid="search-status">
        {status}
      </span>
    </div>
  );
}
