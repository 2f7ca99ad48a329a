#!/usr/bin/env python3
"""Times /proc/<pid>/smaps_rollup reads of a large forksnap process and of its snapshot
child, the cost the copy-on-write sampler budgets for (src/pressure: SMAPS_COST_PER_PAGE).

Usage: tools/smaps-cost.py [KEYS]   (default 10000000; needs a release build with --features cli)
"""
import os, statistics, subprocess, sys, time

keys = sys.argv[1] if len(sys.argv) > 1 else "10000000"
exe = os.path.join(os.path.dirname(__file__), "..", "target", "release", "forksnap")
bench = subprocess.Popen([exe, "bench", "--keys", keys, "--runs", "8"], stdout=subprocess.DEVNULL)


def read(pid):
    t = time.perf_counter()
    with open(f"/proc/{pid}/smaps_rollup") as f:
        text = f.read()
    rss_kb = int(next(l for l in text.splitlines() if l.startswith("Rss:")).split()[1])
    return time.perf_counter() - t, rss_kb


try:
    # Wait until the dataset is built and the first snapshot child exists.
    deadline = time.time() + 120
    child = []
    while time.time() < deadline and len(child) < 9:
        kids = open(f"/proc/{bench.pid}/task/{bench.pid}/children").read().split()
        for k in kids:
            try:
                child.append(read(int(k)))
            except OSError:
                pass
        time.sleep(0.01)
    if not child:
        sys.exit("no snapshot child seen")
    ms = statistics.median(c[0] for c in child) * 1000
    rss = statistics.median(c[1] for c in child)
    pages = rss / 4
    print(f"child smaps_rollup: median {ms:.1f} ms over {len(child)} reads, RSS {rss / 1e6:.2f} GB, "
          f"{ms * 1e6 / pages:.0f} ns per resident 4 KiB page")
finally:
    bench.kill()
    bench.wait()
