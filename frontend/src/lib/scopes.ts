/** Data shaping for the Scopes tab: flatten the tree into visible rows given the expanded set. */
import type { ScopeNode } from '../api/client';

export interface ScopeRow {
  node: ScopeNode;
  depth: number;
  hasChildren: boolean;
  expanded: boolean;
}

export function visibleRows(roots: ScopeNode[], expanded: Set<number>): ScopeRow[] {
  const out: ScopeRow[] = [];
  const walk = (nodes: ScopeNode[], depth: number) => {
    for (const n of nodes) {
      const open = expanded.has(n.scope_id);
      out.push({ node: n, depth, hasChildren: n.children.length > 0, expanded: open });
      if (open) walk(n.children, depth + 1);
    }
  };
  walk(roots, 0);
  return out;
}

/** Ids of every node down to `depth` levels (the tree opens with its top levels expanded). */
export function expandToDepth(roots: ScopeNode[], depth: number): Set<number> {
  const s = new Set<number>();
  const walk = (nodes: ScopeNode[], d: number) => {
    if (d >= depth) return;
    for (const n of nodes) {
      if (n.children.length) s.add(n.scope_id);
      walk(n.children, d + 1);
    }
  };
  walk(roots, 0);
  return s;
}

export function findScope(roots: ScopeNode[], id: number): ScopeNode | null {
  for (const n of roots) {
    if (n.scope_id === id) return n;
    const c = findScope(n.children, id);
    if (c) return c;
  }
  return null;
}
