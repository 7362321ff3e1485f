/** One kernel's durations in log-spaced buckets (GET /kernels/histogram), empty buckets drawn: a gap between two
 * modes shows. Bars are equally wide per bucket, so the x axis is logarithmic; edges are stated on hover. */
import type { Api, SessionDetail } from '../api/client';
import { fmtDur, fmtInt } from '../lib/format';
import { useAsync } from '../lib/useAsync';
import { AsyncView, Empty } from './States';

const W = 640;
const H = 110;

export function DurationHistogram({ api, session, name, win }: { api: Api; session: SessionDetail; name: string; win?: { start: number; end: number } }) {
  const h = useAsync((sig) => api.kernelHistogram(session, name, sig, win), [api, session, name, win?.start, win?.end]);
  return (
    <AsyncView value={h} what="the duration histogram">
      {(d) => {
        if (!d.buckets.length) return <Empty>No launches of this kernel {win ? 'overlap the visible range' : 'were recorded'}.</Empty>;
        const peak = Math.max(...d.buckets.map((b) => b.count));
        const bw = W / d.buckets.length;
        const ratio = Math.pow(2, 1 / d.per_octave);
        return (
          <figure className="histogram" data-testid="histogram" data-counts={JSON.stringify(d.buckets.map((b) => b.count))} data-name={name}>
            <figcaption className="small">
              Durations of {fmtInt(d.count)} launch{d.count === 1 ? '' : 'es'}
              {win ? ' overlapping the visible range' : ''}: {d.buckets.length} buckets from {fmtDur(d.buckets[0].lo_ns)} to {fmtDur(d.buckets[d.buckets.length - 1].hi_ns)}, each ×{ratio.toFixed(2)} wider than the last (
              {d.per_octave} per doubling; a bucket holds lo ≤ d &lt; hi). Bar height: launches, linear; hover a bar for its edges.
            </figcaption>
            <svg viewBox={`0 0 ${W} ${H + 18}`} width={W} height={H + 18} role="img" aria-label={`Duration histogram of ${name}`}>
              {d.buckets.map((b, i) => {
                const bh = b.count ? Math.max(2, (b.count / peak) * H) : 0;
                return (
                  <g key={i}>
                    <rect x={i * bw + 0.5} y={H - bh} width={Math.max(1, bw - 1)} height={bh} className="hbar" />
                    <rect x={i * bw} y={0} width={bw} height={H} className="hit">
                      <title>
                        {fmtDur(b.lo_ns)} ≤ d &lt; {fmtDur(b.hi_ns)}: {fmtInt(b.count)} launch{b.count === 1 ? '' : 'es'}
                      </title>
                    </rect>
                  </g>
                );
              })}
              <line x1={0} x2={W} y1={H} y2={H} className="axis" />
              {d.buckets.map((b, i) =>
                i % d.per_octave === 0 || i === 0 ? (
                  <text key={i} x={i * bw} y={H + 13} className="tick">
                    {fmtDur(b.lo_ns)}
                  </text>
                ) : null,
              )}
            </svg>
          </figure>
        );
      }}
    </AsyncView>
  );
}
