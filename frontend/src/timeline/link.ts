/**
 * Timelines that show the same window (the compare view: two sessions one above the other, each measured from
 * its own start). A change made on one member is applied to the others directly, without a React render per
 * wheel event, and never echoed back to the member it came from.
 */
import type { Viewport } from './viewport';

export class ViewportLink {
  private members = new Map<number, (vp: Viewport) => void>();
  private nextId = 1;
  private driver: number | null = null;

  /** Join with the function that moves this member's window; returns the member's id. */
  join(apply: (vp: Viewport) => void): number {
    const id = this.nextId++;
    this.members.set(id, apply);
    this.driver ??= id;
    return id;
  }

  leave(id: number): void {
    this.members.delete(id);
    if (this.driver === id) this.driver = this.members.keys().next().value ?? null;
  }

  /** Member `from` moved to `vp` (the user's doing): every other member follows. `from` null moves all. */
  publish(from: number | null, vp: Viewport): void {
    if (from !== null) this.driver = from;
    for (const [id, apply] of this.members) if (id !== from) apply({ ...vp });
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
