"""Shared fixtures of the data tests: a tiny asymmetric skeleton, its scan, DICOM writer."""
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bonepatch.anatomy import CLASS_IDS

NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _toy_mask() -> np.ndarray:
    """(128, 48) label map of a crude skeleton; the left humerus is longer than the right."""
    m, c = np.zeros((128, 48), np.uint8), CLASS_IDS
    m[8:28, 16:32] = c["skull"]
    m[28:34, 22:26] = c["cervical_vertebrae"]
    m[34:60, 22:26] = c["thoracic_vertebrae"]
    m[60:72, 22:26] = c["lumbar_vertebrae"]
    m[72:78, 22:26] = c["sacrum"]
    m[66:80, 12:21] = c["pelvis"]
    m[66:80, 27:36] = c["pelvis"]
    m[36:62, 5:8] = c["humerus"]
    m[36:56, 40:43] = c["humerus"]
    m[80:110, 15:18] = c["femur"]
    m[80:110, 30:33] = c["femur"]
    return m


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A checkpoint of the smoke experiment trained for one step (256x64 phantom, tiny model)."""
    from train_helpers import TINY, compose_cfg

    from bonepatch.train import run

    tmp = tmp_path_factory.mktemp("train")
    cfg = compose_cfg(tmp, ["experiment=smoke", *TINY, "trainer.max_steps=1", "+trainer.limit_val_batches=1",
                            "test=false", "callbacks.overlays=null"])
    run(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


@pytest.fixture
def toy_mask() -> np.ndarray:
    return _toy_mask()


@pytest.fixture
def toy_scan() -> np.ndarray:
    """(128, 48) uint16 counts: bright bones, faint body, Poisson noise (seeded)."""
    rng = np.random.default_rng(0)
    mask = _toy_mask()
    return rng.poisson(1 + 40 * (mask > 0)).astype(np.uint16)


@pytest.fixture
def write_dicom():
    """write_dicom(path, frames (F,H,W), modality="NM", codes=None, iops=None, **tags) -> path.

    ``codes``: per-frame (CodeValue, CodeMeaning) of the detector's ViewCodeSequence;
    ``iops``: per-frame ImageOrientationPatient. The patient is always "Doe^Jane" / "PID-4711".
    """

    def write(path, frames, modality="NM", codes=None, iops=None, **tags):
        frames = np.asarray(frames, np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = NM_STORAGE if modality == "NM" else CT_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PID-4711", modality
        ds.Rows, ds.Columns, ds.NumberOfFrames = frames.shape[1], frames.shape[2], len(frames)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = [2.4, 2.4]
        if codes or iops:
            items = []
            for i in range(len(frames)):
                det = Dataset()
                if codes:
                    det.ViewCodeSequence = [Dataset()]
                    det.ViewCodeSequence[0].CodeValue, det.ViewCodeSequence[0].CodeMeaning = codes[i]
                if iops:
                    det.ImageOrientationPatient = iops[i]
                items.append(det)
            ds.DetectorInformationSequence = items
            ds.DetectorVector = list(range(1, len(frames) + 1))
        for k, v in tags.items():
            setattr(ds, k, v)
        ds.PixelData = frames.tobytes()
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
