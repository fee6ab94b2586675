"""Readers for whole-body bone scan images and label masks (DICOM NM, PNG/JPG/TIFF, NPY).

Every reader returns counts as float32 ``(H, W)`` arrays and checks its input in one place, so
a bad file fails with a :class:`BoneScanInputError` that names the file, says what is wrong and
how to fix it. DICOM patient identifiers are never read: only the tags in ``_DICOM_TAGS`` are.

View detection of a DICOM frame (first hit wins):
1. ``DetectorInformationSequence[d].ViewCodeSequence[0]`` (CodeMeaning, then CodeValue), where
   ``d`` is the frame's entry of ``DetectorVector`` (else the frame index); top-level
   ``ViewCodeSequence`` for a single frame;
2. the words ANT/ANTERIOR or POST/POSTERIOR in ``ImageComments``, ``SeriesDescription`` or the
   file name (single-frame files only: a two-frame series names both views);
3. frame order: frame 0 anterior and frame 1 posterior of a two-frame file, else "unknown".
Other files: the words ANT/POST... in the file name (``case7_post.png``), else "unknown".

RGB images whose three channels are equal are accepted as grayscale (exported gray JPGs often
are RGB); any other colour image is refused.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.pixels import apply_modality_lut
from scipy.ndimage import gaussian_filter

from bonepatch.anatomy import NUM_CLASSES

IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
_VIEW_WORDS = {"ANT": "anterior", "ANTERIOR": "anterior", "POST": "posterior", "POSTERIOR": "posterior"}
#: The only DICOM tags ever read (pixel module, geometry, view hints): no patient module.
_DICOM_TAGS = (
    "Modality", "SOPClassUID", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PlanarConfiguration", "PixelData", "FloatPixelData", "DoubleFloatPixelData",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "RescaleSlope", "RescaleIntercept",
    "RescaleType", "ModalityLUTSequence", "PixelSpacing", "ImageOrientationPatient",
    "DetectorInformationSequence", "DetectorVector", "ViewCodeSequence", "ImageComments",
    "SeriesDescription", "LossyImageCompression",
)


class BoneScanInputError(ValueError):
    """An input file that cannot be used; the message names the file and says how to fix it."""


@dataclass
class ScanView:
    """One planar view read from a file.

    image: float32 (H, W) counts (>= 0). view: "anterior" | "posterior" | "unknown".
    spacing_mm: pixel size (row spacing) or None. source: the file path. frame: frame index in
    the file. flipped: the frame is stored left-right mirrored w.r.t. the anterior orientation
    (image left = patient left): from ImageOrientationPatient when present (row direction
    towards patient right), else assumed for posterior views (the gamma-camera display habit).
    """

    image: np.ndarray
    view: str
    spacing_mm: float | None
    source: str
    frame: int = 0
    flipped: bool = False


def _fail(path, what: str, fix: str):
    raise BoneScanInputError(f"{path}: {what}; {fix}")


def body_found(image: np.ndarray, sigma: float = 3.0) -> bool:
    """Whether ``image`` (H, W) shows something body-like rather than only noise or nothing.

    The image is smoothed; its contrast (99.5th minus 5th percentile) must clearly exceed the
    smoothed background noise (from the 5th-25th percentile spread, as a body covers well under
    3/4 of a frame) and the pixels above 20% of that contrast must cover >= 1% of the frame.
    """
    s = gaussian_filter(np.asarray(image, np.float64), sigma)
    p5, p25, hi = np.percentile(s, [5, 25, 99.5])
    contrast, noise = hi - p5, (p25 - p5) / 0.97  # 0.97 = z(25%) - z(5%) of a normal
    return bool(contrast > 10 * noise and (s > p5 + 0.2 * contrast).mean() >= 0.01)


def _check_counts(image: np.ndarray, path, lossy: bool = False) -> np.ndarray:
    """float32 (H, W) counts after the NaN / negative / shape checks."""
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        if not (np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])):
            _fail(path, f"is a colour image (shape {image.shape}) where a grayscale scan is expected",
                  "export the scan as single-channel grayscale counts")
        image = image[..., 0]
    if image.ndim != 2:
        _fail(path, f"has shape {image.shape}, not a 2-D grayscale image (H, W)",
              "save one planar view per file (a DICOM may hold an anterior and a posterior frame)")
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        _fail(path, f"has {int((~np.isfinite(image)).sum())} NaN/inf pixels", "replace them with 0 counts")
    if image.min() < 0:
        if not lossy:
            _fail(path, f"has negative counts (min {image.min():g})",
                  "counts must be >= 0: remove the offset or clip the image at 0 before saving")
        image = np.clip(image, 0, None)  # ringing of lossy compression, not real counts
    return image


def _view_of_code(item) -> str:
    """'anterior' | 'posterior' | 'unknown' from a ViewCodeSequence item's meaning or value."""
    for text in (getattr(item, "CodeMeaning", ""), getattr(item, "CodeValue", "")):
        view = _view_of_text(str(text))
        if view != "unknown":
            return view
    return "unknown"


def _view_of_text(text: str) -> str:
    views = {_VIEW_WORDS[w] for w in re.split(r"[^A-Z]+", text.upper()) if w in _VIEW_WORDS}
    return views.pop() if len(views) == 1 else "unknown"


def _dicom_frames_info(ds, n_frames: int, name: str) -> list[tuple[str, bool | None]]:
    """(view, row direction points to patient right or None if unknown) per frame; ``name``: file stem."""
    detectors = list(getattr(ds, "DetectorInformationSequence", []) or [])
    vector = getattr(ds, "DetectorVector", None)
    vector = [] if vector is None else [int(v) for v in np.atleast_1d(vector)]
    text_view = "unknown"
    if n_frames == 1:
        texts = [str(getattr(ds, k, "")) for k in ("ImageComments", "SeriesDescription")] + [name]
        text_view = next((v for v in map(_view_of_text, texts) if v != "unknown"), "unknown")
    out = []
    for i in range(n_frames):
        d = vector[i] - 1 if len(vector) == n_frames and 0 < vector[i] <= len(detectors) else i
        det = detectors[d] if d < len(detectors) else None
        codes = list(getattr(det, "ViewCodeSequence", []) or []) or \
            (list(getattr(ds, "ViewCodeSequence", []) or []) if n_frames == 1 else [])
        view = _view_of_code(codes[0]) if codes else "unknown"
        if view == "unknown":
            view = text_view if n_frames == 1 else ("anterior", "posterior")[i]
        iop = getattr(det, "ImageOrientationPatient", None) or getattr(ds, "ImageOrientationPatient", None)
        out.append((view, float(iop[0]) < 0 if iop is not None and len(iop) == 6 else None))
    return out


def _open_dicom(path: Path, force: bool, pixels: bool):
    """(dataset with only ``_DICOM_TAGS``, number of frames) after the modality/frame checks."""
    try:
        ds = pydicom.dcmread(path, specific_tags=list(_DICOM_TAGS), stop_before_pixels=not pixels)
    except Exception as err:  # pydicom raises many types for truncated / corrupt files
        _fail(path, f"is not a readable DICOM ({type(err).__name__}: {err})",
              "check that the file is complete (not truncated) and a valid DICOM file")
    modality = str(getattr(ds, "Modality", "?"))
    if modality != "NM" and not force:
        _fail(path, f"is a {modality} DICOM, not NM (nuclear medicine)",
              "pass force=True (force_dicom=True for FolderDataset) to read it anyway")
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n_frames > 2:
        _fail(path, f"has {n_frames} frames (3-D); only 1 (one view) or 2 (anterior + posterior) are read",
              "export the planar whole-body views as separate files")
    return ds, n_frames


def _read_dicom(path: Path, force: bool) -> list[ScanView]:
    ds, n_frames = _open_dicom(path, force, pixels=True)
    try:
        pixels = apply_modality_lut(ds.pixel_array, ds)  # RescaleSlope/Intercept or a modality LUT
    except Exception as err:
        _fail(path, f"has pixel data that cannot be decoded ({type(err).__name__}: {err})",
              "check that the file is complete (not truncated); re-export it uncompressed")
    frames = pixels[None] if n_frames == 1 else pixels  # (F, H, W) or (F, H, W, 3)
    spacing = getattr(ds, "PixelSpacing", None)
    spacing = float(spacing[0]) if spacing else None
    lossy = str(getattr(ds, "LossyImageCompression", "00")) == "01"
    return [ScanView(_check_counts(frames[i], path, lossy), view, spacing, str(path), i,
                     right if right is not None else view == "posterior")
            for i, (view, right) in enumerate(_dicom_frames_info(ds, n_frames, path.stem))]


def _pil_array(path: Path, palette_as_index: bool) -> np.ndarray:
    """The pixels of a single-page Pillow image: (H, W) or (H, W, C)."""
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                _fail(path, f"has {im.n_frames} pages/frames, not a single 2-D image",
                      "save one planar view per file")
            if im.mode == "P" and not palette_as_index:
                im = im.convert("RGB")
            elif im.mode in ("LA", "PA"):
                im = im.getchannel(0)
            return np.asarray(im)
    except BoneScanInputError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as err:
        _fail(path, f"is not a readable image ({err})", "check that the file is complete and not truncated")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        _fail(path, f"is not a readable .npy array ({err})", "save it with numpy.save (no pickled objects)")


def is_dicom_file(path: Path) -> bool:
    """A .dcm/.dicom file, or a suffix-less file with the DICOM preamble."""
    return path.suffix.lower() in (".dcm", ".dicom") or (path.suffix == "" and pydicom.misc.is_dicom(path))


def read_views(path, force: bool = False, check_body: bool = True) -> list[ScanView]:
    """All planar views in ``path``: one, or two for an anterior/posterior DICOM.

    Args:
        path: a DICOM (NM, 1 or 2 frames; other modalities only with ``force``; DICOM files may
            lack a suffix), PNG, JPG, TIFF (8- or 16-bit grayscale) or NPY (2-D) file.
        force: read a DICOM whatever its modality.
        check_body: warn when no body is found in a view (``body_found``, ~20 ms a view).

    Returns:
        ScanViews with float32 (H, W) counts. Warns when no body is found in a view.
    """
    path = Path(path)
    if not path.is_file():
        _fail(path, "does not exist or is not a file", "check the path")
    if is_dicom_file(path):
        views = _read_dicom(path, force)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        pixels = _load_npy(path) if path.suffix.lower() == ".npy" else _pil_array(path, False)
        view = _view_of_text(path.stem)  # e.g. "case7_post.png"
        views = [ScanView(_check_counts(pixels, path), view, None, str(path), 0, view == "posterior")]
    else:
        _fail(path, f"has an unsupported file type {path.suffix!r}", f"use one of {IMAGE_SUFFIXES}")
    for v in views if check_body else ():
        if not body_found(v.image):
            warnings.warn(f"{path} (frame {v.frame}): no body found, the scan looks empty or noise only",
                          stacklevel=2)
    return views


def read_label_values(path) -> np.ndarray:
    """The 2-D integer array of a mask file, its ids not yet checked (``read_mask`` checks them)."""
    path = Path(path)
    if not path.is_file():
        _fail(path, "does not exist or is not a file", "check the path")
    if path.suffix.lower() not in MASK_SUFFIXES:
        _fail(path, f"has an unsupported mask file type {path.suffix!r}", f"use one of {MASK_SUFFIXES}")
    mask = _load_npy(path) if path.suffix.lower() == ".npy" else _pil_array(path, True)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and all(
            np.array_equal(mask[..., 0], mask[..., c]) for c in (1, 2)):
        mask = mask[..., 0]
    if mask.ndim != 2:
        _fail(path, f"has shape {mask.shape}, not a 2-D label map",
              "save the mask as a single-channel image of label ids 0..12 (8-bit PNG)")
    if not (np.issubdtype(mask.dtype, np.integer) or np.array_equal(mask, np.round(mask))):
        _fail(path, "has non-integer label values", "save the mask as integer label ids 0..12")
    return mask


def read_mask(path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A label map (H, W) int64 with ids 0..12 from a PNG/TIFF (gray or palette indices) or NPY.

    ``shape``: the (H, W) of its image; a different mask size is an error.
    """
    path = Path(path)
    mask = read_label_values(path)
    if shape is not None and tuple(mask.shape) != tuple(shape):
        _fail(path, f"mask size {mask.shape} differs from its image size {tuple(shape)}",
              "save the mask at the image's size (nearest-neighbour resize)")
    if mask.size and (mask.min() < 0 or mask.max() >= NUM_CLASSES):
        _fail(path, f"has label values {sorted(set(np.unique(mask).tolist()) - set(range(NUM_CLASSES)))} "
                    f"outside 0..{NUM_CLASSES - 1}",
              "map the labels to bonepatch.anatomy.CLASSES ids (0 background .. 12 femur)")
    return mask.astype(np.int64)


def probe_views(path, force: bool = False) -> list[str]:
    """The view of each frame in ``path``, as ``read_views`` finds it, without decoding pixels."""
    path = Path(path)
    if not is_dicom_file(path):
        return [_view_of_text(path.stem)]
    ds, n_frames = _open_dicom(path, force, pixels=False)
    return [view for view, _ in _dicom_frames_info(ds, n_frames, path.stem)]
