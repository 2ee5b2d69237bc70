#!/usr/bin/env python3
"""Deterministic benchmark corpora for bench/compare.sh.

  corpus.py mixed DEST --mib N [--seed S]   mixed tree of about N MiB
  corpus.py small DEST --files N [--seed S] N small files in 100-file dirs
  corpus.py mutate DEST [--seed S]          edit/insert/delete/add a few percent

Everything generated comes from random.Random(seed); the copied parts come
from this machine's /usr trees in sorted order, so the corpus is the same on
every run on the same machine (and similar across Debian machines).
A JSON summary is printed on stdout.
"""

import argparse
import json
import os
import random
import shutil
import sys

MIB = 1024 * 1024

TEXT_ROOTS = ["/usr/share/doc", "/usr/include"]
PY_GLOB_PARENT = "/usr/lib"
BIN_ROOTS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]


def tree_bytes(path):
    total = 0
    for dp, dns, fns in os.walk(path):
        dns.sort()
        for f in fns:
            try:
                st = os.lstat(os.path.join(dp, f))
            except OSError:
                continue
            if os.path.isfile(os.path.join(dp, f)) and not os.path.islink(os.path.join(dp, f)):
                total += st.st_size
    return total


def copy_entry(src, dst):
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True, ignore_dangling_symlinks=True)
    elif os.path.isfile(src):
        shutil.copy2(src, dst)


def text_sources():
    roots = list(TEXT_ROOTS)
    if os.path.isdir(PY_GLOB_PARENT):
        roots += sorted(
            os.path.join(PY_GLOB_PARENT, d)
            for d in os.listdir(PY_GLOB_PARENT)
            if d.startswith("python3")
        )
    return [r for r in roots if os.path.isdir(r)]


def copy_trees(dest, budget):
    """Copies whole top-level entries of the text roots until the budget is used."""
    used = 0
    copied = []
    for root in text_sources():
        name = root.strip("/").replace("/", "_")
        out = os.path.join(dest, "trees", name)
        os.makedirs(out, exist_ok=True)
        for entry in sorted(os.listdir(root)):
            src = os.path.join(root, entry)
            if os.path.islink(src):
                size = 0
            elif os.path.isdir(src):
                size = tree_bytes(src)
            else:
                size = os.lstat(src).st_size if os.path.isfile(src) else 0
            if used + size > budget:
                continue
            try:
                copy_entry(src, os.path.join(out, entry))
            except (OSError, shutil.Error):
                continue
            used += size
        copied.append(root)
    return used, copied


def copy_binaries(dest, budget):
    out = os.path.join(dest, "bin")
    os.makedirs(out, exist_ok=True)
    used = 0
    for root in BIN_ROOTS:
        if not os.path.isdir(root):
            continue
        for entry in sorted(os.listdir(root)):
            src = os.path.join(root, entry)
            if os.path.islink(src) or not os.path.isfile(src):
                continue
            size = os.path.getsize(src)
            if size == 0 or used + size > budget:
                continue
            shutil.copy2(src, os.path.join(out, entry))
            used += size
        break
    return used


def line_pool():
    """Lines of real text and code from the machine, in a fixed order."""
    lines = []
    for root in text_sources():
        for dp, dns, fns in os.walk(root):
            dns.sort()
            for f in sorted(fns):
                if not f.endswith((".h", ".py", ".txt", ".md", ".hpp", ".c", ".rst")):
                    continue
                try:
                    with open(os.path.join(dp, f), "rb") as fh:
                        lines.extend(fh.read().splitlines(keepends=True))
                except OSError:
                    pass
            if len(lines) > 3_000_000:
                break
    if not lines:  # no text on the machine: fall back to generated words
        rng = random.Random(1)
        words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                 for _ in range(5000)]
        lines = [b" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + b"\n"
                 for _ in range(200_000)]
    return lines


def text_blob(rng, pool, size):
    """Runs of consecutive lines from random places: compresses like code/logs."""
    parts = []
    n = 0
    while n < size:
        start = rng.randrange(len(pool))
        run = pool[start:start + rng.randint(1, 64)]
        chunk = b"".join(run)
        parts.append(chunk)
        n += len(chunk)
    return b"".join(parts)[:size]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def mixed(dest, mib, seed):
    rng = random.Random(seed)
    total = mib * MIB
    os.makedirs(dest, exist_ok=True)
    trees, roots = copy_trees(dest, int(total * 0.40))
    bins = copy_binaries(dest, int(total * 0.10))
    pool = line_pool()
    # Large compressible files: 1/2 in four big files, the rest in 2 MiB files.
    text_budget = int(total * 0.25)
    text = 0
    for i in range(4):
        size = text_budget // 8
        write(os.path.join(dest, "text", f"big-{i}.log"), text_blob(rng, pool, size))
        text += size
    i = 0
    while text < text_budget:
        size = min(2 * MIB, text_budget - text)
        write(os.path.join(dest, "text", "parts", f"part-{i:03}.txt"), text_blob(rng, pool, size))
        text += size
        i += 1
    # Incompressible files: two big ones, then 8 MiB and 1 MiB ones.
    rand_budget = int(total * 0.25)
    rnd = 0
    sizes = [rand_budget * 3 // 10, rand_budget * 3 // 10]
    while sum(sizes) + 8 * MIB <= rand_budget * 0.75:
        sizes.append(8 * MIB)
    while sum(sizes) + MIB <= rand_budget:
        sizes.append(MIB)
    for i, size in enumerate(sizes):
        write(os.path.join(dest, "random", f"r{i:03}.bin"), rng.randbytes(size))
        rnd += size
    # A few exact duplicates, as real trees have (copies, vendored files).
    dup = 0
    dups = sorted(os.listdir(os.path.join(dest, "random")))[2:6] + \
        sorted(os.listdir(os.path.join(dest, "text", "parts")))[:8]
    os.makedirs(os.path.join(dest, "dup"), exist_ok=True)
    for name in dups:
        src = os.path.join(dest, "random", name)
        if not os.path.exists(src):
            src = os.path.join(dest, "text", "parts", name)
        shutil.copyfile(src, os.path.join(dest, "dup", name))
        dup += os.path.getsize(src)
    return {"kind": "mixed", "trees_bytes": trees, "tree_roots": roots, "binary_bytes": bins,
            "text_bytes": text, "random_bytes": rnd, "duplicate_bytes": dup}


def small(dest, files, seed):
    rng = random.Random(seed)
    pool = line_pool()
    total = 0
    for i in range(files):
        d = os.path.join(dest, f"d{i // 10000:02}", f"e{(i // 100) % 100:02}")
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        size = int(2 ** rng.uniform(5, 14))  # 32 B .. 16 KiB, log-uniform
        if rng.random() < 0.1:
            data = rng.randbytes(size)
            name = f"f{i:06}.bin"
        else:
            data = text_blob(rng, pool, size)
            name = f"f{i:06}.txt"
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        total += size
    return {"kind": "small", "files": files, "bytes": total}


def regular_files(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for f in sorted(fns):
            p = os.path.join(dp, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def mutate(dest, seed):
    rng = random.Random(seed)
    files = regular_files(dest)
    n = len(files)
    picks = rng.sample(files, k=max(4, n * 4 // 100))
    q = len(picks) // 4
    edit, insert, delete = picks[:2 * q], picks[2 * q:3 * q], picks[3 * q:]
    stats = {"files_before": n, "edited": 0, "inserted": 0, "deleted": 0, "added": 0,
             "bytes_added": 0}
    for p in edit:  # overwrite a few bytes in place, same size
        size = os.path.getsize(p)
        if size == 0:
            continue
        with open(p, "r+b") as f:
            f.seek(rng.randrange(size))
            f.write(rng.randbytes(rng.randint(1, 64)))
        stats["edited"] += 1
    for p in insert:  # insert bytes in the middle: shifts everything after
        with open(p, "rb") as f:
            data = f.read()
        at = rng.randrange(len(data) + 1)
        extra = rng.randbytes(rng.randint(1, 4096))
        with open(p, "wb") as f:
            f.write(data[:at] + extra + data[at:])
        stats["inserted"] += 1
        stats["bytes_added"] += len(extra)
    for p in delete:
        os.unlink(p)
        stats["deleted"] += 1
    # The biggest random file gets 100 bytes inserted in its middle, the
    # biggest log 1 MiB appended: both must cost far less than the file.
    bigs = sorted((f for f in files if os.path.exists(f)), key=lambda f: (-os.path.getsize(f), f))
    big_rand = next((f for f in bigs if f.endswith(".bin")), None)
    big_log = next((f for f in bigs if f.endswith(".log")), None)
    if big_rand:
        with open(big_rand, "rb") as f:
            data = f.read()
        mid = len(data) // 2
        with open(big_rand, "wb") as f:
            f.write(data[:mid] + rng.randbytes(100) + data[mid:])
        stats["bytes_added"] += 100
    pool = line_pool()
    if big_log:
        with open(big_log, "ab") as f:
            f.write(text_blob(rng, pool, MIB))
        stats["bytes_added"] += MIB
    # New files: 1% of the count, small text, plus one 16 MiB random file.
    for i in range(max(1, n // 100)):
        data = text_blob(rng, pool, rng.randint(1024, 64 * 1024))
        write(os.path.join(dest, "added", f"new-{i:04}.txt"), data)
        stats["added"] += 1
        stats["bytes_added"] += len(data)
    write(os.path.join(dest, "added", "new-random.bin"), rng.randbytes(16 * MIB))
    stats["added"] += 1
    stats["bytes_added"] += 16 * MIB
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["mixed", "small", "mutate"])
    ap.add_argument("dest")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20260101)
    a = ap.parse_args()
    if a.what == "mixed":
        r = mixed(a.dest, a.mib, a.seed)
    elif a.what == "small":
        r = small(a.dest, a.files, a.seed)
    else:
        r = mutate(a.dest, a.seed)
    json.dump(r, sys.stdout)
    print()


if __name__ == "__main__":
    main()
