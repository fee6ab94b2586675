"""Phantom generation speed, single process: ``OMP_NUM_THREADS=1 python benchmarks/phantom_speed.py``.

Prints views/s (one 1024x256 view = image + mask + keypoints) after a warm-up.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bonepatch.data.phantom import PhantomConfig, render  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=200, help="views to time (default 200)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg = PhantomConfig()
    for i in range(5):  # warm-up (imports, caches)
        render(a.seed + 1, i, cfg)
    t = time.perf_counter()
    for i in range(a.n):
        render(a.seed, i, cfg)
    dt = time.perf_counter() - t
    print(f"{a.n / dt:.1f} views/s ({1000 * dt / a.n:.1f} ms per 1024x256 view, 1 process)")


if __name__ == "__main__":
    main()
