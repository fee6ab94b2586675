"""File side of ``predict.py``: finding inputs, naming outputs, atomic writes, DICOM SEG.

Every output is written to a hidden temp file in its own folder and moved into place with
``os.replace``, so a killed run leaves whole files or none. Output names come from the input's
file name and view only, never from DICOM header fields.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__
from .anatomy import BONE_CLASSES, CLASSES
from .data.io import IMAGE_SUFFIXES

#: Header fields blanked in a DICOM SEG (highdicom copies them from the source image).
_IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                "ReferringPhysicianName")


def collect_inputs(spec, exclude: str | Path | None = None) -> tuple[list[Path], list[str], int]:
    """Input files from a path, a folder (recursive), a glob, or a list of those.

    Folders yield the files with an image suffix (``data.io.IMAGE_SUFFIXES``) or none (DICOM),
    hidden files and anything under ``exclude`` (the output folder) left out.

    Returns:
        (sorted unique files, specs that matched nothing, number of folder files skipped for
        their suffix).
    """
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    excluded = Path(exclude).resolve() if exclude is not None else None
    found, missing, skipped = [], [], 0
    for s in map(str, specs):
        p = Path(s)
        if p.is_dir():
            files = [f for f in p.rglob("*") if f.is_file()
                     and not any(part.startswith(".") for part in f.relative_to(p).parts)]
            keep = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES or f.suffix == ""]
            skipped += len(files) - len(keep)
        elif p.is_file():
            keep = [p]
        else:
            keep = [Path(f) for f in glob.glob(s, recursive=True) if Path(f).is_file()]
        if not keep:
            missing.append(s)
        found += [f for f in keep if excluded is None or excluded not in f.resolve().parents]
    unique = {f.resolve(): f for f in found}
    return sorted(unique.values(), key=lambda f: str(f)), missing, skipped


def output_stems(files: list[Path]) -> dict[Path, Path]:
    """Output path prefix (relative to the output folder) of each input file.

    The input's sub-folder below the inputs' common folder is kept; two inputs with the same
    stem in one folder (``a.png``, ``a.dcm``) get the suffix added (``a_png``, ``a_dcm``).
    """
    if not files:
        return {}
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    rel = {f: f.resolve().parent.relative_to(root) / f.stem for f in files}
    clashes = {r for r in rel.values() if list(rel.values()).count(r) > 1}
    return {f: r.with_name(f"{r.name}_{f.suffix.lstrip('.').lower()}") if r in clashes else r
            for f, r in rel.items()}


def view_tags(views: list[str]) -> list[str]:
    """Name part per frame: the view, or ``frame<i>_<view>`` when a file repeats a view."""
    return [v if views.count(v) == 1 else f"frame{i}_{v}" for i, v in enumerate(views)]


@contextmanager
def atomic_open(path: str | Path, overwrite: bool = False):
    """A binary file handle for ``path`` that appears there only once it is complete.

    Raises FileExistsError when ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=true to replace it or choose another output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path, array: np.ndarray, overwrite: bool = False) -> None:
    """uint8 (H, W) or (H, W, 3) array as PNG."""
    with atomic_open(path, overwrite) as f:
        Image.fromarray(np.ascontiguousarray(array)).save(f, format="PNG")


def write_json(path, obj, overwrite: bool = False) -> None:
    with atomic_open(path, overwrite) as f:
        f.write(json.dumps(obj, indent=2, allow_nan=False).encode())


def write_npz(path, overwrite: bool = False, **arrays) -> None:
    with atomic_open(path, overwrite) as f:
        np.savez_compressed(f, **arrays)


def write_csv(path, rows: list[dict], fields: list[str], overwrite: bool = False) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path, overwrite) as f:
        f.write(text.getvalue().encode())


def require_highdicom():
    """The highdicom module, or an ImportError that says how to install it."""
    try:
        import highdicom
    except ImportError as err:
        raise ImportError("dicom_seg=true needs highdicom: pip install 'bonepatch[dicomseg]' "
                          "(or pip install highdicom), or run with dicom_seg=false") from err
    return highdicom


class SegNotPossible(ValueError):
    """A DICOM input that cannot carry a DICOM SEG (the label PNGs still hold the result)."""


def dicom_seg(source: str | Path, label_maps: list[np.ndarray | None]):
    """A DICOM SEG (highdicom) of ``source``'s frames: one segment per bone class.

    Args:
        source: the input DICOM file. label_maps: per frame (H, W) ids, or None for a frame
            without a segmentation (left empty).

    The SEG references the source by its UIDs; patient name, id, birth date, sex, accession
    number and study id are blanked (``_IDENTIFYING``). Raises SegNotPossible for a source
    without the UIDs to reference, or with several frames but no patient coordinate system
    (Frame of Reference + plane geometry; planar two-frame NM files usually have none).
    """
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    logging.getLogger("highdicom").setLevel(logging.WARNING)  # not a line per copied module
    import pydicom

    ds = pydicom.dcmread(source)
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID") if k not in ds]
    if missing:
        raise SegNotPossible(f"no DICOM SEG: the source lacks {', '.join(missing)}")
    if len(label_maps) > 1 and hd.spatial.get_image_coordinate_system(ds) is None:
        raise SegNotPossible("no DICOM SEG: highdicom places several frames only in a patient coordinate "
                             "system, which this source lacks (usual for planar two-frame NM)")
    frames = np.stack([np.zeros((ds.Rows, ds.Columns), np.uint8) if m is None else m.astype(np.uint8)
                       for m in label_maps])  # (F, H, W) class ids = segment numbers
    for key in _IDENTIFYING:
        setattr(ds, key, "")
    for key in ("StudyDate", "StudyTime"):  # required (may be empty) in a SEG
        setattr(ds, key, ds.get(key, ""))
    algo = hd.AlgorithmIdentificationSequence(name="bonepatch", version=__version__,
                                              family=codes.cid7162.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(
        segment_number=c, segment_label=CLASSES[c], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Bone, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo) for c in BONE_CLASSES]
    return hd.seg.Segmentation(
        source_images=[ds], pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="bonepatch", manufacturer_model_name="bonepatch", software_versions=__version__,
        device_serial_number="0", series_description="bonepatch skeleton segmentation")


def write_dicom(path, dataset, overwrite: bool = False) -> None:
    with atomic_open(path, overwrite) as f:
        dataset.save_as(f, enforce_file_format=True)
