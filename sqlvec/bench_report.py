"""What ``sqlvec bench`` prints besides its JSON lines: a progress bar on stderr, markdown tables, the best
setting per system at a target recall, QPS at equal recall, and the recall-vs-QPS plot."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

# --------------------------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr (redrawn in place when stderr is a terminal, at most ~10 times a
    second); ``finish`` leaves one summary line in either case, so logs show each long step once."""

    def __init__(self, label: str, total: int | None = None, unit: str = "") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.tty = sys.stderr.isatty()
        self.done = 0

    def update(self, done: int | None = None, note: str = "", fraction: float | None = None) -> None:
        if done is not None:
            self.done = done
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and not (self.total and self.done >= self.total):
            return
        self.last = now
        print("\r" + self._line(now, note, fraction) + "\x1b[K", end="", file=sys.stderr, flush=True)

    def finish(self, note: str = "") -> float:
        if self.total:
            self.done = self.total
        elapsed = time.perf_counter() - self.t0
        line = self._line(time.perf_counter(), note, None, final=True)
        print(("\r" if self.tty else "") + line + ("\x1b[K" if self.tty else ""), file=sys.stderr, flush=True)
        return elapsed

    def _line(self, now: float, note: str, fraction: float | None, final: bool = False) -> str:
        elapsed = now - self.t0
        width = 28
        if fraction is None and self.total:
            fraction = min(1.0, self.done / self.total)
        if final:
            fraction = 1.0 if fraction is None else fraction
        if fraction is not None:
            filled = int(width * fraction)
            bar = "#" * filled + "." * (width - filled)
        else:  # unknown length: a marker bouncing along the bar
            pos = int(elapsed * 8) % (2 * width - 2)
            pos = pos if pos < width else 2 * width - 2 - pos
            bar = "." * pos + "#" + "." * (width - pos - 1)
        parts = [f"{self.label:<44.44} [{bar}]"]
        if self.total:
            parts.append(f"{self.done}/{self.total}{self.unit}")
            if elapsed > 0 and self.done:
                rate = self.done / elapsed
                parts.append(f"{rate:,.0f}{self.unit}/s")
                if not final and self.done < self.total:
                    parts.append(f"eta {(self.total - self.done) / rate:.0f}s")
        elif fraction is not None and not final:
            parts.append(f"{fraction:.0%}")
        parts.append(f"{elapsed:.1f}s")
        if note:
            parts.append(note)
        return " ".join(parts)


# ----------------------------------------------------------------------------------------------- tables

ANN_PHASES = ("sweep", "exact_topk")
SET_PHASES = ("filtered", "range")  # answers of varying size: their own tables
EXACT_INDEX = "none (exact)"
_LABELS = ("system", "dsn", "rows", "dim", "phase", "index", "metric", "queries", "data", "server", "k",
           "query_format", "cores", "build_settings", "notices", "method", "sql",
           "index_status")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and b:
        return f"{a / b:.2f}"
    return ""


def systems_of(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["system"] for r in results))


def print_load_table(results: list[dict]) -> None:
    """Markdown: one row per (phase, index, figure) outside the sweep, one column per system, and the ratio
    of the first system to the second when two ran."""
    rows = [r for r in results if r["phase"] not in ANN_PHASES + SET_PHASES + ("at_recall",)]
    if not rows:
        return
    systems = systems_of(results)
    figures: dict[tuple[str, str], dict[str, object]] = {}
    for r in rows:
        where = r["phase"] + (f" {r['index']}" if r.get("index") else "")
        for key, value in r.items():
            if key not in _LABELS:
                figures.setdefault((where, key), {})[r["system"]] = value
    ratio = len(systems) == 2
    print("\n| phase | figure | " + " | ".join(systems) + (f" | {systems[0]} / {systems[1]} |" if ratio else " |"))
    print("| --- | --- | " + " | ".join("---" for _ in systems) + (" | --- |" if ratio else " |"))
    for (where, key), by_system in figures.items():
        cells = [_fmt(by_system.get(s)) for s in systems]
        line = f"| {where} | {key} | " + " | ".join(cells) + " |"
        if ratio:
            line += f" {_ratio(*(by_system.get(s) for s in systems))} |"
        print(line)


def print_ann_table(results: list[dict]) -> None:
    """Markdown: per index and setting, each system's recall@k, QPS per client count, p50 / p99 latency at
    the smallest client count; then QPS ratios (first system / second) per client count."""
    ann = [r for r in results if r["phase"] in ANN_PHASES]
    if not ann:
        return
    systems = systems_of(results)
    clients = sorted({r["clients"] for r in ann if "clients" in r})
    c1 = clients[0] if clients else 1
    rows: dict[str, dict[str, dict[tuple[str, int], dict]]] = {}  # index -> setting -> (system, clients)
    skipped: dict[tuple[str, str], str] = {}
    for r in ann:
        index = r.get("index") or EXACT_INDEX
        settings = rows.setdefault(index, {})
        if "skipped" in r and "clients" not in r:  # the whole index, for this system
            skipped[(r["system"], index)] = str(r["skipped"])
            continue
        settings.setdefault(r.get("setting", ""), {})[(r["system"], r["clients"])] = r
    ratio = len(systems) == 2
    head = ["index", "setting"]
    for s in systems:
        head += [f"{s} recall"] + [f"{s} QPS {c}c" for c in clients] + [f"{s} p50 ms", f"{s} p99 ms"]
    if ratio:
        head += [f"QPS {c}c {systems[0]}/{systems[1]}" for c in clients]
    width = len(clients) + 3
    print("\n| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for index, settings in rows.items():
        if any((s, index) in skipped for s in systems):
            cells = [index, "(all)"]
            for s in systems:
                note = skipped.get((s, index))
                cells += [f"skipped: {note}" if note else "measured below"] + [""] * (width - 1)
            print("| " + " | ".join(c.replace("|", "/") for c in cells + [""] * (len(head) - len(cells))) + " |")
        for setting, by in settings.items():
            cells = [index, setting]
            for s in systems:
                if (s, index) in skipped:
                    cells += ["skipped"] + [""] * (width - 1)
                    continue
                base = by.get((s, c1), {})
                cells.append(_cell(base, "recall"))
                cells += [_cell(by.get((s, c), {}), "qps") for c in clients]
                cells += [_cell(base, "p50_ms"), _cell(base, "p99_ms")]
            if ratio:
                cells += [_ratio(by.get((systems[0], c), {}).get("qps"), by.get((systems[1], c), {}).get("qps"))
                          for c in clients]
            print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")


def print_filtered_table(results: list[dict]) -> None:
    """Markdown: the filtered phase per index, setting and filter; each system's recall@10, QPS, p50 / p99,
    mean rows returned and fraction of short answers; the QPS ratio; each system's plan."""
    _print_set_table(results, "filtered", "Filtered top-10 (WHERE bucket < C ORDER BY embedding <op> q LIMIT 10, "
                     "1 client); short = fraction of queries returning fewer than min(10, matching) rows:",
                     ("recall", "qps", "p50_ms", "p99_ms", "mean_rows", "short_frac"))


def print_range_table(results: list[dict]) -> None:
    """Markdown: the range phase per index and setting; each system's recall, QPS, p50 / p99, mean rows
    returned (against mean_true_rows); the QPS ratio; each system's plan."""
    rows = [r for r in results if r["phase"] == "range" and "range_rows" in r]
    target = rows[0]["range_rows"] if rows else 50
    _print_set_table(results, "range", f"Range search (WHERE embedding <op> q < radius, radius per query for about "
                     f"{target} exact rows, 1 client); recall = found & exact / exact:",
                     ("recall", "qps", "p50_ms", "p99_ms", "mean_rows", "mean_true_rows"))


_SET_HEADS = {"recall": "recall", "qps": "QPS", "p50_ms": "p50 ms", "p99_ms": "p99 ms", "mean_rows": "rows",
              "short_frac": "short", "mean_true_rows": "exact rows"}


def _print_set_table(results: list[dict], phase: str, title: str, keys: tuple[str, ...]) -> None:
    recs = [r for r in results if r["phase"] == phase]
    if not recs:
        return
    systems = systems_of(results)
    ratio = len(systems) == 2
    rows: dict[tuple[str, str], dict[str, dict]] = {}  # (index, filter) -> system -> record
    skipped: dict[tuple[str, str], str] = {}
    for r in recs:
        index = r.get("index") or EXACT_INDEX
        if "skipped" in r and "clients" not in r:  # the whole index, for this system
            skipped[(r["system"], index)] = str(r["skipped"])
            continue
        rows.setdefault((index, r.get("filter", "")), {})[r["system"]] = r
    for _, index in skipped:  # measured by no system: one row saying so
        if not any(key[0] == index for key in rows):
            rows[(index, "")] = {}
    head = ["index", "setting"] + (["filter"] if phase == "filtered" else [])
    for s in systems:
        head += [f"{s} {_SET_HEADS[k]}" for k in keys]
    if ratio:
        head += [f"QPS {systems[0]}/{systems[1]}"]
    head += [f"{s} plan" for s in systems]
    print(f"\n{title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for (index, filt), by in rows.items():
        if not by:  # skipped by every system
            cells = [index, "(all)"] + ([""] if phase == "filtered" else [])
            for s in systems:
                note = skipped.get((s, index))
                cells += [f"skipped: {note}" if note else "-"] + [""] * (len(keys) - 1)
            cells += [""] * (len(head) - len(cells))
            print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            continue
        first = next(iter(by.values()))
        cells = [index, first.get("setting") or "-"] + ([filt] if phase == "filtered" else [])
        for s in systems:
            r = by.get(s)
            if r is None:
                note = skipped.get((s, index))
                cells += [f"skipped: {note}" if note else "-"] + [""] * (len(keys) - 1)
                continue
            cells += [_cell(r, k) for k in keys]
        if ratio:
            cells.append(_ratio(*(by.get(s, {}).get("qps") for s in systems)))
        cells += [str(by.get(s, {}).get("plan") or by.get(s, {}).get("search") or "") for s in systems]
        print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")


def _cell(r: dict, key: str) -> str:
    if "skipped" in r or "error" in r:
        return f"error: {r.get('error', '')}" if key == "recall" else ""
    v = r.get(key)
    return f"{v:.3f}" if key == "recall" and isinstance(v, float) else _fmt(v)


# ------------------------------------------------------------------------------------ recall-QPS curves

def curves(results: list[dict]) -> dict[tuple[str, str, int], list[tuple[float, float, str]]]:
    """(system, index, clients) -> [(recall, qps, setting)] over the sweep's measured points."""
    out: dict[tuple[str, str, int], list[tuple[float, float, str]]] = {}
    for r in results:
        if r["phase"] == "sweep" and isinstance(r.get("qps"), (int, float)) and isinstance(r.get("recall"), float):
            out.setdefault((r["system"], r["index"], r["clients"]), []).append(
                (r["recall"], float(r["qps"]), r.get("setting", "")))
    return out


def frontier(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both recall and QPS, by ascending recall (so descending QPS)."""
    best = -1.0
    keep = []
    for p in sorted(points, key=lambda p: (-p[0], -p[1])):
        if p[1] > best:
            keep.append(p)
            best = p[1]
    return keep[::-1]


def qps_at_recall(points: list[tuple[float, float, str]], target: float) -> tuple[float | None, str]:
    """QPS of a curve at ``target`` recall and how it was found: measured at a setting with exactly that
    recall; interpolated (log QPS linear in recall) between the frontier points either side; a lower bound
    when every setting already exceeds the target; or None when no setting reaches it."""
    front = frontier(points)
    if not front:
        return None, "no measurements"
    for r, q, s in front:
        if abs(r - target) < 1e-9:
            return q, f"measured at {s}"
    above = [p for p in front if p[0] >= target]
    below = [p for p in front if p[0] < target]
    if not above:
        return None, f"not reached (best recall {max(p[0] for p in front):.3f})"
    hi = above[0]
    if not below:  # a lower bound: the target can be had at least this fast
        if all(p[0] >= target for p in points):
            return hi[1], f">= : every setting reaches the target; fastest {hi[2] or '-'} (recall {hi[0]:.3f})"
        return hi[1], (f">= : the fastest setting reaching the target, {hi[2] or '-'} (recall {hi[0]:.3f}), is "
                       "faster than every setting below it")
    lo = below[-1]
    t = (target - lo[0]) / (hi[0] - lo[0])
    qps = math.exp(math.log(lo[1]) + t * (math.log(hi[1]) - math.log(lo[1])))
    return qps, f"interpolated between {lo[2]} (recall {lo[0]:.3f}) and {hi[2]} (recall {hi[0]:.3f})"


def at_recall_records(results: list[dict], target: float) -> list[dict]:
    """One record per (system, index, clients): QPS at the target recall along that curve."""
    out = []
    for (system, index, clients), points in curves(results).items():
        qps, how = qps_at_recall(points, target)
        out.append({"system": system, "phase": "at_recall", "index": index, "clients": clients,
                    "target_recall": target, "qps": round(qps, 1) if qps is not None else None, "how": how})
    return out


def print_best(results: list[dict], target: float) -> None:
    """Per client count and system: the fastest setting (any index, or exact search) reaching ``target``
    recall; then QPS at equal recall per index, interpolated along each curve, with ratios."""
    ann = [r for r in results if r["phase"] in ANN_PHASES and isinstance(r.get("qps"), (int, float))
           and isinstance(r.get("recall"), float)]
    if not ann:
        return
    systems = systems_of(results)
    clients = sorted({r["clients"] for r in ann})
    ratio = len(systems) == 2
    print(f"\nBest setting per system at recall@10 >= {target} (max QPS among the settings reaching it):\n")
    head = ["clients"] + [f"{s}: index, setting (recall) QPS" for s in systems] + (
        [f"QPS {systems[0]}/{systems[1]}"] if ratio else [])
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for c in clients:
        cells, best_qps = [str(c)], []
        for s in systems:
            ok = [r for r in ann if r["system"] == s and r["clients"] == c and r["recall"] >= target]
            if not ok:
                cells.append("none reaches it")
                best_qps.append(None)
                continue
            b = max(ok, key=lambda r: r["qps"])
            setting = b.get("setting") or "-"
            cells.append(f"{b.get('index') or EXACT_INDEX}, {setting} ({b['recall']:.3f}) {_fmt(float(b['qps']))}")
            best_qps.append(b["qps"])
        if ratio:
            cells.append(_ratio(*best_qps))
        print("| " + " | ".join(cells) + " |")

    at = at_recall_records(results, target)
    if not at:
        return
    indexes = list(dict.fromkeys(r["index"] for r in at))
    print(f"\nQPS at equal recall@10 = {target}, along each system's curve (log QPS interpolated linearly in "
          "recall between the neighbouring settings where no setting lands on it exactly):\n")
    head = ["index", "clients"] + [f"{s} QPS" for s in systems] + (
        [f"{systems[0]}/{systems[1]}"] if ratio else []) + ["how"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for index in indexes:
        for c in clients:
            by = {r["system"]: r for r in at if r["index"] == index and r["clients"] == c}
            if not by:
                continue
            cells = [index, str(c)] + [_fmt(by[s]["qps"]) if s in by and by[s]["qps"] is not None else "-"
                                       for s in systems]
            if ratio:
                cells.append(_ratio(*(by.get(s, {}).get("qps") for s in systems)))
            cells.append("; ".join(f"{s}: {by[s]['how']}" for s in systems if s in by))
            print("| " + " | ".join(cells) + " |")


# -------------------------------------------------------------------------------------------------- plot

def plot(results: list[dict], path: str, target: float, title: str) -> str | None:
    """Recall@10 (x) against QPS (y, log) per system, index and client count; exact search as crosses at
    recall 1. Returns the path written, or None (with a note on stderr) when matplotlib is missing."""
    lines = curves(results)
    if not lines:
        return None
    try:
        import logging

        import matplotlib

        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no plot was drawn (pip install matplotlib)", file=sys.stderr)
        return None
    systems = systems_of(results)
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P"]
    keys = list(dict.fromkeys((index, clients) for _, index, clients in lines))
    colours = plt.get_cmap("tab20" if len(keys) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(13, 7))
    for (system, index, clients), pts in lines.items():  # in sweep order: recall rises along each curve
        k = keys.index((index, clients))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=styles[systems.index(system) % len(styles)],
                marker=markers[systems.index(system) % len(markers)], color=colours(k % colours.N), markersize=4,
                label=f"{system} {index} {clients} client{'s' if clients != 1 else ''}")
    for r in results:
        if r["phase"] == "exact_topk" and isinstance(r.get("qps"), (int, float)):
            ax.scatter([r["recall"]], [r["qps"]], marker="x+*"[systems.index(r["system"]) % 3], s=60,
                       color="black" if r["clients"] == min(x for _, _, x in lines) else "grey",
                       label=f"{r['system']} exact {r['clients']} client{'s' if r['clients'] != 1 else ''}")
    ax.axvline(target, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
