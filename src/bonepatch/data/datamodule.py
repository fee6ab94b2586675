"""LightningDataModule around dataset objects that Hydra instantiates (``_target_``)."""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset, default_collate


def collate(samples: list[dict]) -> dict:
    """Default collate for the tensors, ``meta`` as a dict of lists (no tensors made from it).

    image (B,1,H,W), mask (B,H,W), keypoints (B,K,3); meta {"case_id": [B str], ...}.
    """
    batch = default_collate([{k: v for k, v in s.items() if k != "meta"} for s in samples])
    batch["meta"] = {k: [s["meta"][k] for s in samples] for k in samples[0].get("meta", {})}
    return batch


class BoneScanDataModule(L.LightningDataModule):
    """Loaders for train / val / test / predict datasets (any may be None if that stage is unused).

    Shuffling comes from torch's global RNG and worker seeds from Lightning's own worker seeding
    (``lightning.seed_everything(seed, workers=True)`` in ``bonepatch.train``: the Trainer gives
    each worker seeded torch / numpy / random), so a seeded run sees the same batches.
    """

    def __init__(self, train_dataset: Dataset | None = None, val_dataset: Dataset | None = None,
                 test_dataset: Dataset | None = None, batch_size: int = 4, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool | None = None,
                 predict_dataset: Dataset | None = None, verify: bool = True):
        super().__init__()
        self.verify = verify  # read by bonepatch.train: run bonepatch.verify on the data first
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.datasets = {"train": train_dataset, "val": val_dataset, "test": test_dataset,
                         "predict": predict_dataset}
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers

    def _loader(self, stage: str, shuffle: bool = False) -> DataLoader:
        dataset = self.datasets[stage]
        if dataset is None:
            raise ValueError(f"BoneScanDataModule has no {stage}_dataset; set data.{stage}_dataset in the config")
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
