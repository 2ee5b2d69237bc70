#!/usr/bin/env python3
"""Turns compare.sh's results.csv into one table (stdout and table.md) and results.json.

  report.py OUT_DIR

Ratios: speed = peer_seconds / repo_seconds (>1: repo is faster);
RSS = repo_rss / peer_rss (<1: repo uses less memory);
size = peer_bytes / repo_bytes (>1: repo's repository is smaller).
"""

import csv
import json
import os
import sys

MIB = 1024 * 1024

STEPS = [
    ("init", "init", False),
    ("backup1", "first backup, mixed corpus", True),
    ("backup2_unchanged", "second backup, unchanged", True),
    ("backup3_mutated", "backup after mutation", True),
    ("restore", "full restore (latest)", True),
    ("check_read_data", "check, reading all data", True),
    ("small_backup1", "first backup, small files", True),
    ("small_backup2_unchanged", "second backup, small files unchanged", True),
]
SIZES = [
    ("repo_size_after_backup1", "repository size after first backup"),
    ("repo_growth_after_mutation", "growth after mutation"),
    ("small_repo_size", "repository size, small files"),
]
SIZE_STEPS = {step for step, _ in SIZES}
CEILINGS = [
    ("zstd3_T2_corpus", "tar piped to zstd -3 -T2, corpus"),
    ("b3sum_corpus", "b3sum, corpus"),
    ("cp_a_corpus", "cp -a, corpus"),
    ("rsync_a_corpus", "rsync -a, corpus"),
    ("rsync_a_corpus_rerun", "rsync -a rerun (no change), corpus"),
    ("cp_a_small", "cp -a, small files"),
    ("rsync_a_small", "rsync -a, small files"),
    ("rsync_a_small_rerun", "rsync -a rerun (no change), small files"),
]


def fnum(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load(out):
    """Rows by (tool, step): for timed steps the fastest successful round
    (other load on the machine only ever adds time), else the first failure;
    for sizes the median round: chunk boundaries are keyed per repository
    (repo, restic, rustic), so each fresh repository dedups an edit a
    little differently and one round alone is a coin toss. Each kept row
    gets `rounds`, `ok_rounds`, `all_seconds`, `all_bytes`."""
    grouped = {}
    with open(os.path.join(out, "results.csv")) as f:
        for r in csv.DictReader(f):
            grouped.setdefault((r["tool"], r["step"]), []).append(r)
    rows = {}
    for key, rs in grouped.items():
        ok = [r for r in rs if r["status"] == "ok"]
        timed = [r for r in ok if fnum(r.get("seconds")) is not None]
        if key[1] == "restore_verify":
            bad = [r for r in rs if r["status"] != "ok"]
            best = dict(bad[0] if bad else rs[0])
        elif timed:
            best = dict(min(timed, key=lambda r: fnum(r["seconds"])))
        elif key[1] in SIZE_STEPS and ok and all(fnum(r["bytes"]) is not None for r in ok):
            by_size = sorted(ok, key=lambda r: fnum(r["bytes"]))
            best = dict(by_size[(len(by_size) - 1) // 2])
        elif ok:
            best = dict(ok[0])
        else:
            best = dict(rs[0])
        best["rounds"] = len(rs)
        best["ok_rounds"] = len(ok)
        best["all_seconds"] = [fnum(r["seconds"]) for r in timed]
        best["all_bytes"] = [fnum(r["bytes"]) for r in ok if fnum(r.get("bytes")) is not None]
        rows[key] = best
    meta = {}
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    return rows, meta


def table(header, body):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return "\n".join(out)


def write_report(out, lines, meta, results):
    """table.md and stdout get the lines, results.json the rows and meta."""
    report = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(report)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    sys.stdout.write(report)


def main():
    out = sys.argv[1]
    rows, meta = load(out)
    tools = [t for t in meta.get("tools", "").split() if t] or sorted(
        {t for t, _ in rows if t != "ceiling"})
    repo = lambda step: rows.get(("repo", step))

    results = []
    body = []
    for step, label, rate in STEPS:
        base = repo(step)
        bsec = fnum(base["seconds"]) if base and base["status"] == "ok" else None
        brss = fnum(base["rss_kib"]) if base and base["status"] == "ok" else None
        for t in tools:
            r = rows.get((t, step))
            if r is None:
                continue
            ok = r["status"] == "ok"
            sec, byt, rss = fnum(r["seconds"]), fnum(r["bytes"]), fnum(r["rss_kib"])
            mbps = byt / MIB / sec if ok and rate and sec and byt else None
            speed = sec / bsec if ok and bsec and sec else None
            rss_ratio = brss / rss if ok and brss and rss else None
            status = r["status"]
            if step == "restore" and ok:
                v = rows.get((t, "restore_verify"))
                if v and v["status"] != "ok":
                    status = "MISMATCH"
            if ok and r["ok_rounds"] < r["rounds"]:
                status = f"ok ({r['rounds'] - r['ok_rounds']} of {r['rounds']} rounds failed)"
            results.append({"step": step, "tool": t, "status": status, "seconds": sec,
                            "seconds_all_rounds": r["all_seconds"],
                            "bytes": byt, "mib_per_s": mbps, "rss_mib": rss / 1024 if rss else None,
                            "speed_ratio_peer_over_repo": speed if t != "repo" else None,
                            "rss_ratio_repo_over_peer": rss_ratio if t != "repo" else None})
            if status.startswith("ok"):
                cells = [f"{sec:.2f}", f"{mbps:.0f}" if mbps else "", f"{rss / 1024:.0f}" if rss else ""]
            else:
                cells = [status, "", ""]
            ratio = ["", ""] if t == "repo" else [
                f"{speed:.2f}" if speed else "", f"{rss_ratio:.2f}" if rss_ratio else ""]
            body.append([label, t] + cells + ratio)
    sbody = []
    for step, label in SIZES:
        base = repo(step)
        bb = fnum(base["bytes"]) if base else None
        for t in tools:
            r = rows.get((t, step))
            if r is None:
                continue
            b = fnum(r["bytes"])
            ratio = b / bb if b is not None and bb and t != "repo" else None
            results.append({"step": step, "tool": t, "status": r["status"], "bytes": b,
                            "bytes_all_rounds": r["all_bytes"],
                            "size_ratio_peer_over_repo": ratio})
            sbody.append([label, t, f"{b / MIB:.1f}" if b is not None else r["status"],
                          f"{ratio:.2f}" if ratio else "",
                          " ".join(f"{x / MIB:.1f}" for x in r["all_bytes"])])
    size_table = table(["repository size", "tool", "MiB (median)", "peer/repo size",
                        "each round"], sbody) if sbody else ""
    main_table = table(["step", "tool", "time s", "MiB/s", "peak RSS MiB",
                        "peer/repo time", "repo/peer RSS"], body)

    cbody = []
    for step, label in CEILINGS:
        r = rows.get(("ceiling", step))
        if r is None:
            continue
        sec, byt = fnum(r["seconds"]), fnum(r["bytes"])
        ok = r["status"] == "ok"
        mbps = byt / MIB / sec if ok and sec and byt else None
        results.append({"step": step, "tool": "ceiling", "status": r["status"], "seconds": sec,
                        "seconds_all_rounds": r["all_seconds"],
                        "bytes": byt, "mib_per_s": mbps})
        cbody.append([label, f"{sec:.2f}" if ok else r["status"], f"{mbps:.0f}" if mbps else ""])
    ceil_table = table(["machine ceiling", "time s", "MiB/s"], cbody) if cbody else ""

    def rate(tool, step):
        r = rows.get((tool, step))
        if not r or r["status"] != "ok":
            return None
        s, b = fnum(r["seconds"]), fnum(r["bytes"])
        return b / MIB / s if s and b else None

    def secs(tool, step):
        r = rows.get((tool, step))
        return fnum(r["seconds"]) if r and r["status"] == "ok" else None

    frac = []
    pairs = [
        ("first backup MiB/s / zstd -3 -T2 MiB/s", rate("repo", "backup1"), rate("ceiling", "zstd3_T2_corpus")),
        ("first backup MiB/s / b3sum MiB/s", rate("repo", "backup1"), rate("ceiling", "b3sum_corpus")),
        ("first backup MiB/s / cp -a MiB/s", rate("repo", "backup1"), rate("ceiling", "cp_a_corpus")),
        ("restore MiB/s / cp -a MiB/s", rate("repo", "restore"), rate("ceiling", "cp_a_corpus")),
        ("unchanged backup: rsync rerun time / repo time", secs("ceiling", "rsync_a_corpus_rerun"), secs("repo", "backup2_unchanged")),
        ("small files first backup MiB/s / cp -a MiB/s", rate("repo", "small_backup1"), rate("ceiling", "cp_a_small")),
        ("small files unchanged: rsync rerun time / repo time", secs("ceiling", "rsync_a_small_rerun"), secs("repo", "small_backup2_unchanged")),
    ]
    for label, a, b in pairs:
        if a and b:
            frac.append([label, f"{a / b:.2f}"])
            results.append({"step": "fraction_of_ceiling", "what": label, "value": a / b})
    frac_table = table(["repo vs ceiling", "fraction"], frac) if frac else ""

    text = []
    if meta:
        text.append(f"date {meta.get('date')}, size {meta.get('size')}, best of {meta.get('repeat', 1)} "
                    f"round(s), {meta.get('nproc')} cores "
                    f"({meta.get('cpu')}), {int(meta.get('mem_total_kib', 0)) // 1024} MiB RAM, "
                    f"kernel {meta.get('kernel')}, {meta.get('filesystem')}")
        text.append(f"mixed corpus {meta.get('corpus_files')} files, "
                    f"{meta.get('corpus_bytes', 0) / MIB:.0f} MiB ({meta.get('mutated_bytes', 0) / MIB:.0f} MiB "
                    f"after mutation); small tree {meta.get('small_files')} files, "
                    f"{meta.get('small_bytes', 0) / MIB:.0f} MiB")
        text.append(f"repo built from {meta.get('repo_source', '?')}")
        for t, v in meta.get("versions", {}).items():
            text.append(f"  {t}: {v}")
        if meta.get("extra_install"):
            text.append(f"extra installs: {meta['extra_install']}")
    try:
        with open(os.path.join(out, "loads.txt")) as f:
            text.append("load average (1/5/15 min) at: " + "; ".join(l.strip() for l in f if l.strip()))
    except OSError:
        pass
    text.append("")
    text.append("speed ratio = peer time / repo time (>1: repo faster); RSS ratio = repo / peer (<1: repo "
                "smaller); size ratio = peer bytes / repo bytes (>1: repo smaller)")
    text.append("")
    text.append(main_table)
    if size_table:
        text += ["", size_table]
    if ceil_table:
        text += ["", ceil_table]
    if frac_table:
        text += ["", frac_table]
    write_report(out, text, meta, results)


if __name__ == "__main__":
    main()
