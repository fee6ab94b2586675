import torch

from bonepatch.data.cache import CachedDataset
from bonepatch.data.dataset import PhantomDataset


def test_cached_dataset_serves_what_the_phantom_renders():
    source = PhantomDataset(seed=3, length=4, config={"height": 256, "width": 64, "mm_per_px": 9.6})
    cached = CachedDataset(source, workers=2, chunk=2)
    assert len(cached) == 4
    for i in (0, 3):
        a, b = source[i], cached[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert torch.equal(a["keypoints"], b["keypoints"]) and a["meta"] == b["meta"]
        assert b["mask"].dtype == torch.int64 and b["image"].shape == (1, 256, 64)
