#!/usr/bin/env python3
"""Turns bench/remote.sh's results.csv and storage.csv into one table
(stdout and table.md) and results.json.

  remote_report.py OUT_DIR

Per step and tool: wall seconds with a warm cache and with a cold one (the
tool's cache directory removed just before); repo's time over the fastest
peer's (>1: repo is slower); and the requests and bytes repo reported in its
`--json` output (`storage`), for the steps whose report carries them.
"""

import csv
import json
import os
import sys

from report import MIB, fnum, table, write_report

# (step, label, has a cold run)
STEPS = [
    ("init", "init", False),
    ("backup1", "first backup", False),
    ("backup2_unchanged", "unchanged backup", False),
    ("backup3_changed", "changed backup", False),
    ("snapshots", "snapshots", True),
    ("ls", "ls latest", True),
    ("find", "find", True),
    ("diff", "diff first second (identical)", True),
    ("diff_changed", "diff second third (changed)", True),
    ("restore_one", "restore one file", True),
    ("restore_full", "full restore", True),
    ("check", "check", True),
    ("check_read_data", "check --read-data", True),
]
TOOLS = ["repo", "restic", "rustic"]


def load(out):
    rows = {}
    with open(os.path.join(out, "results.csv")) as f:
        for r in csv.DictReader(f):
            rows[(r["tool"], r["step"])] = r
    storage = {}
    try:
        with open(os.path.join(out, "storage.csv")) as f:
            for r in csv.DictReader(f):
                storage[r["step"]] = json.loads(r["storage_json"])
    except (OSError, ValueError):
        pass
    meta = {}
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    return rows, storage, meta


def cell(rows, tool, key):
    """(seconds or None, text for the table)."""
    r = rows.get((tool, key))
    if r is None:
        return None, ""
    verify = rows.get((tool, key + "_verify"))
    if r["status"] == "ok":
        sec = fnum(r["seconds"])
        if verify and verify["status"] != "ok":
            return None, f"{verify['status'].upper()} ({sec:.2f})"
        return sec, f"{sec:.2f}"
    sec = fnum(r["seconds"])
    return None, f"{r['status']}" + (f" ({sec:.0f})" if sec else "")


def ratio(rows, key, tools):
    """repo over the fastest peer; a repo step cut off by the timeout gives
    a lower bound (">N")."""
    mine, _ = cell(rows, "repo", key)
    peers = [s for s in (cell(rows, t, key)[0] for t in tools if t != "repo") if s]
    r = rows.get(("repo", key))
    if mine is None and r is not None and r["status"] == "timeout" and peers:
        bound = fnum(r["seconds"]) / min(peers)
        return None, f">{bound:.0f}"
    if mine is None or not peers:
        return None, ""
    ratio_ = mine / min(peers)
    return ratio_, f"{ratio_:.2f}"


def storage_text(st):
    if not st:
        return ""
    text = f"{st.get('requests', '?')} req, {st.get('bytes_received', 0) / MIB:.1f} MiB in"
    extra = [f"{k} {v}" for k, v in sorted(st.items())
             if k not in ("requests", "bytes_received", "bytes_sent")]
    if st.get("bytes_sent", 0) >= MIB:
        text += f", {st['bytes_sent'] / MIB:.1f} MiB out"
    return ", ".join([text] + extra)


def main():
    out = sys.argv[1]
    rows, storage, meta = load(out)
    tools = [t for t in TOOLS if any(k[0] == t for k in rows)]
    header = ["step"]
    for t in tools:
        header += [f"{t} warm", f"{t} cold"]
    header += ["repo/fastest warm", "repo/fastest cold", "repo storage warm", "repo storage cold"]
    body, results = [], []
    for step, label, cold in STEPS:
        keys = [step] if not cold else [step + "_warm", step + "_cold"]
        if not any((t, k) in rows for t in tools for k in keys):
            continue  # a step left out with --steps
        line = [label]
        for t in tools:
            for k in keys:
                sec, text = cell(rows, t, k)
                line.append(text)
                r = rows.get((t, k))
                if r is not None:
                    results.append({"step": k, "tool": t, "status": r["status"], "seconds": sec,
                                    "storage": storage.get(k) if t == "repo" else None})
            if not cold:
                line.append("")
        rs = [ratio(rows, k, tools) for k in keys]
        line += [rs[0][1], rs[1][1] if cold else ""]
        line += [storage_text(storage.get(keys[0])), storage_text(storage.get(keys[1])) if cold else ""]
        for k, (r, _) in zip(keys, rs):
            if r is not None:
                results.append({"step": k, "tool": "repo/fastest peer", "ratio": r})
        body.append(line)
    text = []
    if meta:
        text.append(f"date {meta.get('date')}, remote {meta.get('remote')}, round trip "
                    f"{meta.get('rtt_ms'):g} ms, {meta.get('nproc')} cores ({meta.get('cpu')}), "
                    f"{int(meta.get('mem_total_kib', 0)) // 1024} MiB RAM, kernel {meta.get('kernel')}")
        text.append(f"server: {meta.get('server')}")
        text.append(f"corpus: frozen copy of {meta.get('corpus')}: {meta.get('corpus_files')} files, "
                    f"{meta.get('corpus_dirs')} directories, {meta.get('corpus_bytes', 0) / MIB:.0f} MiB; "
                    f"find {meta.get('find_pattern')}; one file: {meta.get('restore_one_file')}; "
                    f"step timeout {meta.get('step_timeout_s')} s")
        text.append(f"repo built from {meta.get('repo_source', '?')}")
        for t, v in meta.get("versions", {}).items():
            text.append(f"  {t}: {v}")
    text += ["", "wall seconds; cold = the tool's cache directory removed just before the step; "
             "repo/fastest = repo's time over the fastest peer's (>1: repo slower)", ""]
    text.append(table(header, body))
    write_report(out, text, meta, results)


if __name__ == "__main__":
    main()
