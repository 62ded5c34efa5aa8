#!/usr/bin/env python3
"""bench/fsync_probe.py DIR: how long the disk under DIR takes to make an
append durable (4 KiB write + fdatasync, as SQLite's WAL commit does with
synchronous = full). Prints one line for the results file."""
import os
import sys
import time

d = sys.argv[1] if len(sys.argv) > 1 else "."
path = os.path.join(d, "fsync-probe.tmp")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
block = b"x" * 4096
samples = []
try:
    for _ in range(200):
        os.write(fd, block)
        t = time.perf_counter()
        os.fdatasync(fd)
        samples.append((time.perf_counter() - t) * 1000)
finally:
    os.close(fd)
    os.unlink(path)
samples.sort()
n = len(samples)
print("fdatasync after a 4 KiB append: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)"
      % (samples[n // 2], samples[int(n * 0.9)], samples[int(n * 0.99)], samples[-1], n))
