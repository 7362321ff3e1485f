"""A diff (its JSON form) as terminal text: who is compared with whom, how, the totals, the rows by impact."""

from __future__ import annotations

from typing import Any

_MARK = {"added": "+", "removed": "-", "slower": "▲", "faster": "▼", "unchanged": " ", "up": "▲", "down": "▼"}


def duration(ns: float) -> str:
    a = abs(ns)
    sign = "-" if ns < 0 else ""
    if a >= 1e9:
        return f"{sign}{a / 1e9:.3f} s"
    if a >= 1e6:
        return f"{sign}{a / 1e6:.3f} ms"
    if a >= 1e3:
        return f"{sign}{a / 1e3:.2f} µs"
    return f"{sign}{a:.0f} ns"


def _value(v: float, unit: str) -> str:
    if unit == "ns":
        return duration(v)
    if unit == "bytes":
        for u, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(v) >= f:
                return f"{v / f:.2f} {u}"
        return f"{v:.0f} B"
    return f"{v:,.1f}" if v != int(v) else f"{int(v):,}"


def _rel(rel: float | None, label: str) -> str:
    if rel is None:
        return "new" if label in ("added", "up") else "-"
    return f"{100 * rel:+.1f}%"


def shorten(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width // 2 - 1] + "…" + s[-(width - width // 2) :]


def text(diff: dict[str, Any], rows: int = 30, width: int = 64) -> str:
    b, t = diff["base"], diff["target"]
    how = (
        f"per step ({b['steps']} vs {t['steps']} steps)"
        if diff["per_step"]
        else "whole sessions (steps not marked on both sides)"
    )
    noise = diff["noise"]
    out = [
        f"base    {b['session_id']}  {b.get('app') or '?'} on {b.get('host') or '?'}",
        f"target  {t['session_id']}  {t.get('app') or '?'} on {t.get('host') or '?'}",
        f"compared {how}; changed = |z| ≥ {noise['z_crit']} and |change| ≥ {100 * noise['min_effect']:.0f}%"
        f" (rows with under {noise['min_instances']} instances a side move by count only)",
        "",
        f"  {'total':<18}{'base':>14}{'target':>14}{'change':>10}  label",
    ]
    for x in diff["totals"]:
        out.append(
            f"{_MARK.get(x['label'], ' ')} {x['metric']:<18}{_value(x['base'], x['unit']):>14}"
            f"{_value(x['target'], x['unit']):>14}{_rel(x['rel'], x['label']):>10}  {x['label']}"
        )
    counts = diff["counts"]
    total_rows = diff.get("rows_total", len(diff["rows"]))
    out += [
        "",
        "rows: "
        + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("added", "removed", "slower", "faster", "unchanged")),
    ]
    shown = [r for r in diff["rows"] if r["label"] != "unchanged"][:rows]
    if shown:
        unit = "/step" if diff["per_step"] else ""
        out.append(
            f"  {'kind':<7}{'name':<{width + 1}}{'n base':>9}{'n target':>9}{'time base':>13}{'target':>13}"
            f"{'change' + unit:>16}{'':>9}  label"
        )
        for r in shown:
            out.append(
                f"{_MARK.get(r['label'], ' ')} {r['kind']:<7}{shorten(r['key'], width):<{width + 1}}"
                f"{r['base']['n_value']:>9.4g}{r['target']['n_value']:>9.4g}"
                f"{duration(r['base']['value_ns']):>13}{duration(r['target']['value_ns']):>13}"
                f"{duration(r['delta_ns']):>16}{_rel(r['rel'], r['label']):>9}  {r['label']}"
            )
    changed = sum(counts.get(k, 0) for k in ("added", "removed", "slower", "faster"))
    if changed > len(shown):
        out.append(f"  … {changed - len(shown)} more changed rows (--rows N, or --format json for all)")
    if total_rows > len(diff["rows"]):
        out.append(f"  (the server sent {len(diff['rows'])} of {total_rows} rows, by impact)")
    if not changed:
        out.append("  nothing changed beyond noise")
    return "\n".join(out) + "\n"
