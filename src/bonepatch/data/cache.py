"""Render a dataset once, in parallel processes, and serve it from memory.

A GPU eats views far faster than one CPU core renders phantoms (~30-50 views/s per core against
hundreds of views/s for training), so fast runs render a fixed set once with all cores and then
reuse it for every epoch (and every method of a benchmark): ``data.train_dataset`` wrapped in
``CachedDataset`` (see conf/data/phantom_cached.yaml).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm


def _render_chunk(args) -> list[tuple]:
    dataset, indices = args
    torch.set_num_threads(1)
    out = []
    for i in indices:
        s = dataset[i]
        out.append((s["image"][0].numpy(), s["mask"].numpy().astype(np.uint8),
                    s["keypoints"].numpy(), s["meta"]))
    return out


class CachedDataset(Dataset):
    """All samples of ``dataset`` rendered up front into compact arrays.

    Args:
        dataset: any dataset yielding the CONTRACTS sample with a mask (e.g. PhantomDataset).
        workers: processes for the rendering (0 = all cores).
        chunk: samples per task.

    Memory: H*W*(4 + 1) bytes a view (1.25 MiB at 1024x256), so 2,000 views take ~2.5 GiB.
    """

    def __init__(self, dataset: Dataset, workers: int = 0, chunk: int = 16):
        n = len(dataset)
        workers = workers or os.cpu_count() or 1
        tasks = [(dataset, range(i, min(i + chunk, n))) for i in range(0, n, chunk)]
        rows: list[tuple] = []
        bar = tqdm(total=n, desc=f"rendering {n} views ({workers} processes)", unit="view")
        if workers == 1:
            results = map(_render_chunk, tasks)
        else:
            pool = ProcessPoolExecutor(workers)
            results = pool.map(_render_chunk, tasks)
        for part in results:
            rows.extend(part)
            bar.update(len(part))
        bar.close()
        if workers != 1:
            pool.shutdown()
        self.images = torch.from_numpy(np.stack([r[0] for r in rows]))  # (N,H,W) float32
        self.masks = torch.from_numpy(np.stack([r[1] for r in rows]))  # (N,H,W) uint8
        self.keypoints = torch.from_numpy(np.stack([r[2] for r in rows]))  # (N,K,3)
        self.meta = [r[3] for r in rows]

    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index][None], "mask": self.masks[index].long(),
                "keypoints": self.keypoints[index], "meta": self.meta[index]}
