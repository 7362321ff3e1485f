/** The launch-API calls per thread (GET /sessions/{id}/launches), times relative to the session origin. */
import type { components } from './schema';
import { rel, type NsLike } from './json';

type S = components['schemas'];
/** *_ns fields may arrive as strings (see json.ts), as in client.ts. */
type Wire<T> = { [K in keyof T]: K extends `${string}_ns` ? NsLike : T[K] };

/** One call: what it launched (kernel or copy, by id and correlation id) and when it ran on the CPU. */
export interface LaunchCall {
  kind: 'kernel' | 'memcpy';
  id: string;
  corrId: number;
  name: string | null;
  device: number;
  stream: number;
  /** When the launched activity started on the GPU. */
  gpuStart: number;
  /** Call entry and exit (exit = entry when the record has no call duration). */
  start: number;
  end: number;
}

export interface LaunchBucket {
  t: number;
  thread: number;
  count: number;
  busy: number;
  longest: LaunchCall;
}

export interface LaunchTimeline {
  start: number;
  end: number;
  bucketNs: number;
  /** Calls overlapping the window: every one is counted in a bucket. */
  total: number;
  buckets: LaunchBucket[];
}

export type LaunchTimelineWire = Omit<Wire<S['LaunchTimeline']>, 'buckets'> & { buckets: (Omit<Wire<S['LaunchBucket']>, 'longest'> & { longest: Wire<S['LaunchCall']> })[] };

export function toLaunchTimeline(w: LaunchTimelineWire, o: bigint): LaunchTimeline {
  return {
    start: rel(w.start_ns, o)!,
    end: rel(w.end_ns, o)!,
    bucketNs: Number(w.bucket_ns),
    total: w.total,
    buckets: w.buckets.map((b) => ({
      t: rel(b.t_ns, o)!,
      thread: b.thread_id,
      count: b.count,
      busy: Number(b.busy_ns),
      longest: {
        kind: b.longest.kind,
        id: b.longest.id,
        corrId: b.longest.corr_id,
        name: b.longest.name,
        device: b.longest.device_id,
        stream: b.longest.stream_id,
        gpuStart: rel(b.longest.gpu_start_ns, o)!,
        start: rel(b.longest.start_ns, o)!,
        end: rel(b.longest.end_ns, o)!,
      },
    })),
  };
}
