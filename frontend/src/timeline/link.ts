/**
 * Timelines that show the same window (the compare view: two sessions one above the other, each measured from
 * its own start). A change made on one member is applied to the others directly, without a React render per
 * wheel event, and never echoed back to the member it came from.
 *
 * Members may be shifted against each other (`setOffset`): member k shows the shared window moved by its
 * offset, so two runs can be aligned at a chosen instant (the same kernel instance in each) and still zoom and
 * pan together at one scale. Without offsets every member shows the same window.
 */
import type { Viewport } from './viewport';

interface Member {
  key: string;
  apply: (vp: Viewport) => void;
}

export class ViewportLink {
  private members = new Map<number, Member>();
  private offsets = new Map<string, number>();
  private nextId = 1;
  private driver: number | null = null;

  /** Join as `key` (the member's role: offsets are set per key) with the function that moves this member's
   * window; returns the member's id. */
  join(key: string, apply: (vp: Viewport) => void): number {
    const id = this.nextId++;
    this.members.set(id, { key, apply });
    this.driver ??= id;
    return id;
  }

  leave(id: number): void {
    this.members.delete(id);
    if (this.driver === id) this.driver = this.members.keys().next().value ?? null;
  }

  /** Shift member `key` by `ns` against the shared window (0 or absent: not shifted). */
  setOffset(key: string, ns: number): void {
    if (ns) this.offsets.set(key, ns);
    else this.offsets.delete(key);
  }

  offset(key: string): number {
    return this.offsets.get(key) ?? 0;
  }

  /** Member `from` moved to `vp` (the user's doing): every other member follows, each at its own offset.
   * `from` null: `vp` is the shared window, and every member moves. */
  publish(from: number | null, vp: Viewport): void {
    const src = from === null ? null : this.members.get(from);
    if (from !== null && !src) return;
    if (from !== null) this.driver = from;
    const d = src ? this.offset(src.key) : 0;
    for (const [id, m] of this.members) {
      if (id === from) continue;
      const o = this.offset(m.key) - d;
      m.apply({ t0: vp.t0 + o, t1: vp.t1 + o });
    }
  }

  /** The member the pointer was last on. Keys (W/A/S/D) drive only it: each member handling them would move
   * the window twice. */
  drive(id: number): void {
    if (this.members.has(id)) this.driver = id;
  }

  drives(id: number): boolean {
    return this.driver === id;
  }

  get size(): number {
    return this.members.size;
  }
}
