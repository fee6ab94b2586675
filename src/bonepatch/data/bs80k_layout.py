"""Index of the public BS-80K 12-region mask layout (no pixels read; ``bonepatch.verify`` reads them).

::

    root/masks/anterior/*.png, root/masks/posterior/*.png   label ids 0..12 (no sternum posterior)
    root/masks/*_colored/                                   RGB copies: ignored
    root/splits/{anterior,posterior}/{train,val,test}.txt   one bare numeric id a line ("945")
    root/splits/splits_5fold.json (or under splits/<view>/) [{"train": ["Anterior_0945", ...], "val": [...]}] x 5
    root/class_labels.json                                  names of the ids ("collarbone" = clavicle)
    images/ (``data.images``, default root/images)          the 8-bit BS-80K scans, any sub-folders

A scan and a mask belong together when their view and numeric id agree. The numeric id of a file
is the last run of digits in its name (``Anterior_0945.png``, ``945_post.jpg``, ``scan-0945.jpg``
-> 945). A mask's view is its folder; a scan's view is the word ANT/ANTERIOR or POST/POSTERIOR in
its name or in a folder name below ``images`` (``images/posterior/945.jpg``). Every structural
problem (layout, names, pairing, splits, folds, leakage, class names) is collected in
``Layout.problems``; nothing is skipped silently.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from bonepatch.anatomy import CLASSES
from bonepatch.data.io import IMAGE_SUFFIXES, MASK_SUFFIXES
from bonepatch.data.problems import DatasetProblems, Problem

VIEWS = ("anterior", "posterior")
SPLITS = ("train", "val", "test")
_VIEW_WORDS = {"ANT": "anterior", "ANTERIOR": "anterior", "POST": "posterior", "POSTERIOR": "posterior"}
#: Other names of our classes in class_labels.json files (after lower-casing, non-alphanumerics -> "_").
ALIASES = {"collarbone": "clavicle", "clavicula": "clavicle", "ribs": "rib", "rib_cage": "rib", "costae": "rib",
           "head": "skull", "cranium": "skull", "skull_head": "skull", "bg": "background",
           "cervical_spine": "cervical_vertebrae", "cervical": "cervical_vertebrae",
           "thoracic_spine": "thoracic_vertebrae", "thoracic": "thoracic_vertebrae",
           "lumbar_spine": "lumbar_vertebrae", "lumbar": "lumbar_vertebrae", "femora": "femur", "humeri": "humerus",
           "scapulae": "scapula", "shoulder_blade": "scapula", "pelvic_bone": "pelvis", "hip_bone": "pelvis"}


@dataclass
class Case:
    """One labelled view: its view, numeric id, mask and scan (None where missing)."""

    view: str
    id: int
    mask: Path | None = None
    image: Path | None = None

    @property
    def name(self) -> str:
        """The case name of splits_5fold.json, e.g. ``Anterior_0945``."""
        return case_name(self.view, self.id)


def case_name(view: str, num: int) -> str:
    return f"{view.capitalize()}_{num:04d}"


def parse_case_name(name: str) -> tuple[str, int] | None:
    """``"Anterior_0945"`` -> ("anterior", 945); None if it is not such a name."""
    m = re.fullmatch(r"(anterior|posterior)_0*(\d+)", str(name).strip(), flags=re.I)
    return (m.group(1).lower(), int(m.group(2))) if m else None


def numeric_id(path: Path) -> int | None:
    """The last run of digits in the file name (without suffix) as an int, or None."""
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else None


def view_of(rel: Path) -> str:
    """'anterior' | 'posterior' from the words in a relative path's parts, else 'unknown'."""
    words = {w for part in rel.with_suffix("").parts for w in re.split(r"[^A-Z]+", part.upper())}
    views = {_VIEW_WORDS[w] for w in words if w in _VIEW_WORDS}
    return views.pop() if len(views) == 1 else "unknown"


def canonical_class(name: str) -> str:
    """Our class name for a class_labels.json name (aliases, plurals, 'spine'/'vertebra' forms)."""
    n = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    for candidate in (n, re.sub(r"_(vertebra|spine)$", "_vertebrae", n), n[:-1] if n.endswith("s") else n):
        candidate = ALIASES.get(candidate, candidate)
        if candidate in CLASSES:
            return candidate
    return n


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


class Layout:
    """The files of a BS-80K-layout dataset, for the views in ``view`` (anterior|posterior|both).

    ``cases``: {(view, id): Case} for every mask and every scan; ``lists``: {(view, split):
    [ids]} from the split files; ``folds``: shipped folds as [{"train": {(view, id)}, "val": ...}]
    or None; ``problems`` / ``notes``: what is wrong / worth saying. See ``bs80k_splits`` for the
    split, fold and leakage logic.
    """

    def __init__(self, root, images=None, view: str = "both"):
        if view not in VIEWS + ("both",):
            raise ValueError(f"data.view={view!r}: choose anterior, posterior or both")
        self.root = Path(root)
        self.images_dir = Path(images) if images else self.root / "images"
        self.views = VIEWS if view == "both" else (view,)
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.cases: dict[tuple[str, int], Case] = {}
        self.lists: dict[tuple[str, str], list[int]] = {}
        self.list_files: dict[tuple[str, str], Path] = {}
        self.folds: list[dict[str, set]] | None = None
        self.folds_files: list[Path] = []
        if not self.root.is_dir():
            self._add("layout", self.root, "dataset folder not found",
                      "point data.root at the folder holding masks/, splits/ and class_labels.json")
            return
        self._scan_masks()
        self._scan_images()
        self._check_class_labels()
        from bonepatch.data.bs80k_splits import check_splits  # split lists, folds, pairing, leakage

        check_splits(self)

    def _add(self, kind: str, file, message: str, fix: str) -> None:
        self.problems.append(Problem(kind, str(file), message, fix))

    def raise_problems(self) -> None:
        """Raise DatasetProblems listing every structural problem (if any)."""
        if self.problems:
            raise DatasetProblems(self.problems, f"{self.root} (BS-80K layout)")

    def labelled(self) -> list[Case]:
        """Cases with both a mask and a scan, sorted by view and id."""
        return [c for _, c in sorted(self.cases.items()) if c.mask is not None and c.image is not None]

    # ---- files -------------------------------------------------------------------------------
    def _scan_masks(self) -> None:
        masks = self.root / "masks"
        fix = "use the public layout: masks/anterior/*.png and masks/posterior/*.png (masks/*_colored/ are ignored)"
        if not masks.is_dir():
            self._add("layout", masks, "mask folder not found", fix)
            return
        for entry in sorted(filter(_visible, masks.iterdir())):
            if entry.is_dir() and (entry.name in VIEWS or entry.name.endswith("_colored")):
                continue
            self._add("layout", entry, f"unexpected {'folder' if entry.is_dir() else 'file'} in masks/", fix)
        for view in self.views:
            folder = masks / view
            if not folder.is_dir():
                self._add("layout", folder, f"no {view} mask folder", fix)
                continue
            for path in sorted(filter(_visible, folder.iterdir())):
                num = numeric_id(path)
                if path.is_dir() or path.suffix.lower() not in MASK_SUFFIXES:
                    self._add("layout", path, f"not a label mask file ({'folder' if path.is_dir() else path.suffix})",
                              f"keep only label PNGs ({', '.join(MASK_SUFFIXES)}) in {folder}")
                elif num is None:
                    self._add("layout", path, "mask name has no numeric id",
                              "name masks by their scan's numeric id, e.g. Anterior_0945.png")
                else:
                    case = self.cases.setdefault((view, num), Case(view, num))
                    if case.mask is not None:
                        self._add("duplicate id", path, f"{view} id {num} also used by {case.mask}",
                                  "keep one mask per view and id")
                    else:
                        case.mask = path

    def _scan_images(self) -> None:
        folder = self.images_dir
        if not folder.is_dir():
            self._add("layout", folder, "scan folder not found", "set data.images to the folder of the BS-80K scans")
            return
        skip = {(self.root / d).resolve() for d in ("masks", "splits")}
        unknown = 0
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if (not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES
                    or any(p.startswith(".") for p in rel.parts) or any(s in path.resolve().parents for s in skip)):
                continue
            num, view = numeric_id(path), view_of(rel)
            labelled = num is not None and any(getattr(self.cases.get((v, num)), "mask", None) for v in self.views)
            if view == "unknown" or num is None:
                if labelled:
                    self._add("unknown view", path, f"cannot tell the view of this scan (id {num} has masks)",
                              "name scans ..._ant/_post (or ANTERIOR/POSTERIOR), or put them in anterior/ and "
                              "posterior/ folders")
                unknown += 1
                continue
            if view not in self.views:
                continue
            case = self.cases.get((view, num))
            if case is None:
                self.cases[(view, num)] = Case(view, num, None, path)
            elif case.image is not None:
                self._add("duplicate id", path, f"{view} id {num} also used by {case.image}",
                          "keep one scan per view and id (remove or rename the copy)")
            else:
                case.image = path
        if unknown:
            self.notes.append(f"{unknown} file(s) in {folder} without a view word or numeric id were not used")

    def _check_class_labels(self) -> None:
        path = self.root / "class_labels.json"
        if not path.is_file():
            self.notes.append(f"{path} not found: assuming the ids of bonepatch.anatomy.CLASSES")
            return
        try:
            pairs = _label_pairs(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, AttributeError) as err:
            self._add("class labels", path, f"cannot be read ({err})",
                      'write {"0": "background", "1": "skull", ...} (ids of bonepatch.anatomy.CLASSES)')
            return
        wrong = [f"{i}={n!r}" for i, n in pairs
                 if not 0 <= i < len(CLASSES) or canonical_class(n) != CLASSES[i]]
        if wrong:
            self._add("class labels", path, f"ids disagree with ours: {', '.join(wrong)} "
                      f"(ours: {dict(enumerate(CLASSES))})",
                      "remap the masks to our ids (bonepatch.anatomy.CLASSES) and fix class_labels.json")


def _label_pairs(data) -> list[tuple[int, str]]:
    """(id, name) pairs of a class_labels.json: {"1": "skull"}, {"skull": 1}, ["background", ...],
    [{"id": 1, "name": "skull"}], or any of these under a "labels" key."""
    if isinstance(data, dict) and "labels" in data:
        data = data["labels"]
    if isinstance(data, list):
        if all(isinstance(d, dict) for d in data):
            return [(int(d["id"]), str(d["name"])) for d in data]
        return [(i, str(n)) for i, n in enumerate(data)]
    if not isinstance(data, dict):
        raise ValueError(f"expected an object or a list, got {type(data).__name__}")
    if all(str(k).strip().lstrip("-").isdigit() for k in data):
        return [(int(k), str(v)) for k, v in data.items()]
    return [(int(v), str(k)) for k, v in data.items()]

