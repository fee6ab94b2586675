"""Dataset integrity check before training: ``python -m bonepatch.verify data=bs80k data.root=DIR``.

Reads every scan and mask of a ``data=`` config once, in parallel threads with a progress bar,
and reports ALL problems at once, each with its file and the fix: the layout's own (names,
pairing, duplicate ids, split files with unknown ids, leakage between splits and folds,
class_labels.json; ``bonepatch.data.bs80k_layout``) and per file: unreadable, image/mask size
mismatch, label ids outside 0..12, sternum on a posterior mask, empty masks. Exit status 1 on
any problem. ``bonepatch.train`` runs it first (``data.verify=false`` skips it); results per file
are cached by file size and mtime (``<root>/.bonepatch_cache/verify.json``), so a second run
reads only what changed. Generated data (the phantom) has nothing on disk to check.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm

from .anatomy import CLASS_IDS, NUM_CLASSES
from .data.io import BoneScanInputError, read_label_values, read_views
from .data.problems import Problem, format_problems

log = logging.getLogger("bonepatch")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Item:
    """One view to read: its scan (and frame), its mask, its view (for the sternum check)."""

    image: str
    frame: int
    mask: str | None
    view: str

    def key(self) -> str:
        return f"{self.image}|{self.frame}|{self.mask}|{self.view}"

    def signature(self) -> list:
        return [[(s := os.stat(p)).st_size, s.st_mtime_ns] for p in (self.image, self.mask) if p]


@dataclass
class Report:
    """What ``verify_data`` found: problems, notes, views checked and how many came from the cache."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0
    cached: int = 0
    source: str = "dataset"

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self, limit: int | None = 20) -> str:
        head = f"{self.source}: {self.checked} view(s) checked ({self.cached} from the cache)"
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        return f"{head}{notes}\n{format_problems(self.problems, self.source, limit)}"


def _from_error(kind: str, path: str, err: Exception) -> Problem:
    """A Problem from a reader's "path: what; fix" message."""
    text = str(err).removeprefix(f"{path}: ")
    what, _, fix = text.partition("; ")
    return Problem(kind, path, what, fix or "check the file")


def check_item(item: Item) -> list[Problem]:
    """Read one scan and its mask; every problem found in them."""
    problems, shape = [], None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            views = read_views(item.image, force=True, check_body=False)  # "no body" is not a data problem
        shape = views[item.frame].image.shape if item.frame < len(views) else None
        if shape is None:
            problems.append(Problem("unreadable", item.image, f"has no frame {item.frame}", "check the file"))
    except (BoneScanInputError, OSError, ValueError) as err:
        problems.append(_from_error("unreadable", item.image, err))
    if not item.mask:
        return problems
    try:
        labels = read_label_values(item.mask)
    except (BoneScanInputError, OSError, ValueError) as err:
        return problems + [_from_error("unreadable", item.mask, err)]
    if shape is not None and labels.shape != shape:
        problems.append(Problem("size mismatch", item.mask, f"mask size {labels.shape[0]}x{labels.shape[1]} differs "
                                f"from its scan {item.image} ({shape[0]}x{shape[1]})",
                                "save the mask at the scan's size (nearest-neighbour resize) or pair it with its own scan"))
    values = np.unique(labels)
    bad = [int(v) for v in values if not 0 <= v < NUM_CLASSES]
    if bad:
        problems.append(Problem("label ids", item.mask, f"label ids {bad} outside 0..{NUM_CLASSES - 1}",
                                "map them to the ids of bonepatch.anatomy.CLASSES (0 background .. 12 femur); "
                                "RGB *_colored copies are not label masks"))
    sternum = CLASS_IDS["sternum"]
    if item.view == "posterior" and sternum in values:
        problems.append(Problem("posterior sternum", item.mask,
                                f"{int((labels == sternum).sum())} sternum pixels (id {sternum}) on a posterior view",
                                "posterior masks have no sternum: relabel those pixels, or check that this is not an "
                                "anterior mask in the posterior folder"))
    if not ((values >= 1) & (values < NUM_CLASSES)).any():
        problems.append(Problem("empty mask", item.mask, "no bone label, only background",
                                "label the scan, or remove it and its id from the split lists"))
    return problems


def _folder_view(case) -> str:
    """A FolderDataset case's view: ANT/POST words in its id, else its keypoints JSON, else unknown."""
    from .data.bs80k_layout import view_of

    view = view_of(Path(case.case_id))
    if view == "unknown" and case.keypoints is not None:
        try:
            view = str(json.loads(Path(case.keypoints).read_text()).get("view", "unknown"))
        except (OSError, ValueError, AttributeError):
            pass
    return view


def _folder_items(data: DictConfig) -> tuple[list[Item], list[Problem], list[str], Path | None]:
    """Items of every FolderDataset split of a config; other datasets (phantom) have none."""
    items, problems, notes, root, members = {}, [], [], None, {}
    for split in ("train", "val", "test"):
        node = data.get(f"{split}_dataset")
        target = str(node.get("_target_", "")) if node is not None else ""
        if not target.endswith("FolderDataset"):
            if node is not None:
                notes.append(f"{split}: {target or 'no _target_'} is generated, nothing on disk to verify")
            continue
        try:
            ds = instantiate(node)
        except BoneScanInputError as err:
            problems.append(_from_error("layout", str(err).split(": ")[0], err))
            continue
        root = ds.root
        for c in ds.cases:
            view = _folder_view(c)
            items[(str(c.image), c.frame)] = Item(str(c.image), c.frame, c.mask and str(c.mask), view)
            members.setdefault(c.case_id, set()).add(split)
    leaked = sorted(k for k, s in members.items() if len(s) > 1)
    if leaked:
        problems.append(Problem("leakage", str(root), f"case ids in two splits: {leaked[:10]}",
                                "list every case in one of train.txt / val.txt / test.txt"))
    return list(items.values()), problems, notes, root


def collect(data: DictConfig) -> tuple[str, list[Item], list[Problem], list[str], Path | None]:
    """(source name, items to read, structural problems, notes, cache folder) of a data config."""
    if str(data.get("_target_", "")).endswith("BS80KDataModule"):
        from .data.bs80k_layout import Layout

        lay = Layout(data.root, data.get("images"), data.get("view", "both"))
        items = [Item(str(c.image), 0, str(c.mask), c.view) for c in lay.labelled()]
        return f"{lay.root} (BS-80K layout)", items, lay.problems, lay.notes, lay.root / ".bonepatch_cache"
    items, problems, notes, root = _folder_items(data)
    return str(root or "data"), items, problems, notes, root and root / ".bonepatch_cache"


def _cache_file(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    for place in (folder, Path.home() / ".cache" / "bonepatch"):
        try:
            place.mkdir(parents=True, exist_ok=True)
            if os.access(place, os.W_OK):
                name = "verify.json" if place == folder else f"verify_{hashlib.sha1(str(folder).encode()).hexdigest()[:12]}.json"
                return place / name
        except OSError:
            continue
    return None


def verify_data(data: DictConfig, workers: int = 0, progress: bool = True, cache: bool = True) -> Report:
    """Check every file of a data config (see the module docstring); never raises for bad data."""
    source, items, problems, notes, cache_dir = collect(data)
    report = Report(list(problems), list(notes), len(items), 0, source)
    file = _cache_file(cache_dir) if cache else None
    try:
        stored = json.loads(file.read_text()) if file and file.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    entries = stored.get("entries", {}) if stored.get("version") == CACHE_VERSION else {}
    todo, results = [], {}
    for item in items:
        try:
            sig = item.signature()
        except OSError:
            sig = None
        hit = entries.get(item.key())
        if sig is not None and hit is not None and hit["sig"] == sig:
            results[item.key()] = (sig, [Problem(**p) for p in hit["problems"]])
        else:
            todo.append((item, sig))
    report.cached = len(items) - len(todo)
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        found = pool.map(lambda t: check_item(t[0]), todo)
        for (item, sig), probs in tqdm(zip(todo, found), total=len(todo), desc="verify", unit="view",
                                       disable=not progress or not todo):
            results[item.key()] = (sig, probs)
    for item in items:
        report.problems += results[item.key()][1]
    if file is not None and todo:
        entries.update({k: {"sig": s, "problems": [p.as_dict() for p in ps]} for k, (s, ps) in results.items() if s})
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}))
            os.replace(tmp, file)
        except OSError:
            pass
    return report


def require_verified(data: DictConfig, progress: bool = True) -> Report:
    """``verify_data`` for training: SystemExit listing every problem (nothing is trained)."""
    report = verify_data(data, progress=progress)
    if not report.ok:
        raise SystemExit(f"data check failed, nothing trained (skip with data.verify=false):\n{report.text()}")
    log.info("data check: %s", report.text().splitlines()[0])
    return report


def run(cfg: DictConfig) -> int:
    """``python -m bonepatch.verify``: print the report, write problems.json; 1 on any problem."""
    report = verify_data(cfg.data, cfg.get("workers", 0), cfg.get("progress", True), cfg.get("cache", True))
    print(report.text(cfg.get("max_listed", 50)))
    out = Path(cfg.paths.output_dir) / "problems.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": report.source, "checked": report.checked, "notes": report.notes,
                               "problems": [p.as_dict() for p in report.problems]}, indent=1))
    print(f"full list: {out}" if report.problems else "ok")
    return 0 if report.ok else 1


def main() -> None:
    import hydra

    conf = str(Path(__file__).resolve().parents[2] / "conf")

    @hydra.main(version_base="1.3", config_path=conf, config_name="verify")
    def _main(cfg: DictConfig) -> None:
        code = run(cfg)
        if code:
            raise SystemExit(code)

    _main()


if __name__ == "__main__":
    main()
