"""How fast ``bonepatch.verify`` checks a BS-80K-layout dataset, cold and from its cache.

    python benchmarks/verify_speed.py --n 200 [--out /tmp/bs80k_bench]   # 200 acquisitions = 400 views, 1024 x 256
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from omegaconf import OmegaConf

from bonepatch.data.phantom.bs80k_writer import write_bs80k
from bonepatch.verify import verify_data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200, help="acquisitions (2 views each)")
    p.add_argument("--out", type=Path, default=Path("/tmp/bs80k_bench"))
    p.add_argument("--workers", type=int, default=0, help="threads (0 = all cores)")
    a = p.parse_args()
    if not (a.out / "dataset").is_dir():
        write_bs80k(a.out, a.n)
    shutil.rmtree(a.out / "dataset" / ".bonepatch_cache", ignore_errors=True)
    cfg = OmegaConf.create({"_target_": "bonepatch.data.bs80k.BS80KDataModule", "root": str(a.out / "dataset"),
                            "images": str(a.out / "images"), "view": "both"})
    for run in ("cold", "cached"):
        t = time.perf_counter()
        report = verify_data(cfg, workers=a.workers, progress=False)
        dt = time.perf_counter() - t
        print(f"{run}: {report.checked} views ({report.cached} cached) in {dt:.2f} s = "
              f"{report.checked / dt:.0f} views/s; problems: {len(report.problems)}")


if __name__ == "__main__":
    main()
