"""Split lists, folds, pairing and leakage of a BS-80K-layout dataset, and the cases of one split.

Checks (problems collected on the ``Layout``): split lines that are not numeric ids, ids listed
twice or matching no file, fold files that are not ``[{"train": [...], "val": [...]}]`` of case
names, scans listed without a mask, masks without a scan, and leakage: an id in two of
train/val/test (with ``view=both`` also the two views of one acquisition in different splits), in
a fold's train and val, in two folds' val, or in the test lists and a fold.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

from bonepatch.data.bs80k_layout import SPLITS, Case, Layout, case_name, parse_case_name
from bonepatch.data.io import BoneScanInputError

log = logging.getLogger("bonepatch")
FOLD_FILES = ("splits/splits_5fold.json", "splits/{view}/splits_5fold.json", "splits_5fold.json")


def _ids(values, limit: int = 10) -> str:
    values = sorted(values)
    return ", ".join(map(str, values[:limit])) + (f" ... ({len(values)} in all)" if len(values) > limit else "")


def check_splits(lay: Layout) -> None:
    """Read split lists and folds into ``lay`` and add every split / pairing / leakage problem."""
    _read_lists(lay)
    _read_folds(lay)
    _check_pairs(lay)
    _check_leakage(lay)


def _read_lists(lay: Layout) -> None:
    for view in lay.views:
        for split in SPLITS:
            path = lay.root / "splits" / view / f"{split}.txt"
            if not path.is_file():
                continue
            ids, bad, twice = [], [], set()
            for n, line in enumerate(path.read_text().splitlines(), 1):
                text = line.strip()
                if not text:
                    continue
                named = parse_case_name(text)
                num = int(text) if text.isdigit() else (named[1] if named and named[0] == view else None)
                if num is None:
                    bad.append(f"line {n}: {text!r}")
                elif num in ids:
                    twice.add(num)
                else:
                    ids.append(num)
            if bad:
                lay._add("unknown id", path, f"not numeric ids: {', '.join(bad[:5])}", "write one bare numeric id a line")
            if twice:
                lay._add("duplicate id", path, f"ids listed twice: {_ids(twice)}", "list every id once")
            unknown = [i for i in ids if (view, i) not in lay.cases]
            if unknown:
                lay._add("unknown id", path, f"ids match no {view} mask or scan: {_ids(unknown)}",
                         f"remove them, or add the masks (masks/{view}/, matched by the numeric id in the name)")
            lay.lists[(view, split)] = ids
            lay.list_files[(view, split)] = path
        if not any((view, s) in lay.lists for s in SPLITS):
            lay.notes.append(f"no split lists in {lay.root / 'splits' / view}")


def _read_folds(lay: Layout) -> None:
    files = {lay.root / f.format(view=v) for f in FOLD_FILES for v in lay.views}
    merged: list[dict[str, set]] | None = None
    for path in sorted(p for p in files if p.is_file()):
        fix = 'write a list of {"train": [...], "val": [...]} with case names like "Anterior_0945"'
        try:
            folds = json.loads(path.read_text())
            if not isinstance(folds, list) or not folds or not all(
                    isinstance(f, dict) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list)
                    for f in folds):
                raise ValueError("not a list of {train, val} objects")
        except (OSError, ValueError) as err:
            lay._add("layout", path, f"cannot be read as folds ({err})", fix)
            continue
        if merged is not None and len(merged) != len(folds):
            lay._add("layout", path, f"{len(folds)} folds, but {lay.folds_files[0]} has {len(merged)}",
                     "give every fold file the same number of folds")
            continue
        merged = merged or [{"train": set(), "val": set()} for _ in folds]
        bad, unknown = [], set()
        for k, fold in enumerate(folds):
            for split in ("train", "val"):
                for name in fold[split]:
                    key = parse_case_name(name)
                    if key is None:
                        bad.append(str(name))
                    elif key[0] in lay.views:
                        merged[k][split].add(key)
                        if (lay.cases.get(key) or Case(*key)).mask is None:
                            unknown.add(case_name(*key))
        if bad:
            lay._add("unknown id", path, f"not case names like Anterior_0945: {_ids(set(bad))}", fix)
        if unknown:
            lay._add("unknown id", path, f"cases without a mask: {_ids(unknown)}",
                     "remove them from the folds or add their masks")
        lay.folds_files.append(path)
    lay.folds = merged


def _referenced(lay: Layout) -> dict[tuple[str, int], list[Path]]:
    refs = defaultdict(list)
    for (view, split), ids in lay.lists.items():
        for i in ids:
            refs[(view, i)].append(lay.list_files[(view, split)])
    for k, fold in enumerate(lay.folds or []):
        for key in fold["train"] | fold["val"]:
            refs[key].append(lay.folds_files[0])
    return refs


def _check_pairs(lay: Layout) -> None:
    refs = _referenced(lay)
    unlabelled = []
    for (view, num), case in sorted(lay.cases.items()):
        if case.mask is not None and case.image is None:
            lay._add("mask without image", case.mask, f"no {view} scan with id {num} in {lay.images_dir}",
                     "add the scan (its name holds the id and ant/post, or it sits in an anterior/posterior "
                     "folder), check data.images, or remove the mask")
        elif case.mask is None and case.image is not None:
            if (view, num) in refs:
                lay._add("image without mask", case.image,
                         f"{view} id {num} is listed in {', '.join(sorted({str(p) for p in refs[(view, num)]}))} "
                         f"but masks/{view} has no mask with id {num}",
                         "add the mask or remove the id from the split lists")
            else:
                unlabelled.append(case_name(view, num))
    if unlabelled:
        lay.notes.append(f"{len(unlabelled)} scan(s) in {lay.images_dir} have no mask and are in no split, "
                         f"not used: {_ids(unlabelled)}")


def _check_leakage(lay: Layout) -> None:
    where = defaultdict(set)  # id -> {(split, view)} over the selected views' lists
    for (view, split), ids in lay.lists.items():
        for i in ids:
            where[i].add((split, view))
    pairs = defaultdict(set)
    for i, entries in where.items():
        for a, b in combinations(sorted(entries), 2):
            if a[0] != b[0]:
                pairs[(a, b)].add(i)
    for (a, b), ids in sorted(pairs.items()):
        cross = a[1] != b[1]
        lay._add("leakage", lay.list_files[(b[1], b[0])],
                 f"ids also in {lay.list_files[(a[1], a[0])]}" + (" (the other view of the same acquisition)"
                                                                   if cross else "") + f": {_ids(ids)}",
                 "keep every id in one of train/val/test" + (
                     " for both views, or train one view at a time (data.view=anterior|posterior)" if cross else ""))
    if not lay.folds:
        return
    source = lay.folds_files[0]
    ids = lambda keys: {i for _, i in keys}  # noqa: E731 - id level: both views of an acquisition
    for k, fold in enumerate(lay.folds):
        both = ids(fold["train"]) & ids(fold["val"])
        if both:
            lay._add("leakage", source, f"fold {k}: ids in both train and val: {_ids(both)}",
                     "put each id (both views) in train or val of a fold, not both")
    for (j, a), (k, b) in combinations(enumerate(lay.folds), 2):
        both = ids(a["val"]) & ids(b["val"])
        if both:
            lay._add("leakage", source, f"ids in the val sets of folds {j} and {k}: {_ids(both)}",
                     "give every id to the val set of exactly one fold")
    test = {i for (view, split), members in lay.lists.items() if split == "test" for i in members}
    used = set().union(*(ids(f["train"] | f["val"]) for f in lay.folds)) & test
    if used:
        lay._add("leakage", source, f"test ids also in the folds: {_ids(used)}",
                 "keep the test ids (splits/<view>/test.txt) out of every fold")


def make_folds(lay: Layout, num_folds: int, seed: int, out: str | Path | None = None) -> list[dict[str, set]]:
    """A seeded ``num_folds``-fold split of the labelled ids (train + val lists if any, else all
    but the test ids), both views of an id in the same fold; written to ``out`` in the shipped
    splits_5fold.json format when given."""
    labelled = lay.labelled()
    listed = {i for (v, s), m in lay.lists.items() if s in ("train", "val") for i in m}
    test = {i for (v, s), m in lay.lists.items() if s == "test" for i in m}
    pool = sorted({c.id for c in labelled if (c.id in listed if listed else c.id not in test)})
    if len(pool) < max(num_folds, 2):
        raise BoneScanInputError(f"{lay.root}: {len(pool)} labelled ids cannot make {num_folds} folds; "
                                 "add data or lower data.num_folds")
    order = np.random.default_rng(seed).permutation(len(pool))
    val_ids = [{pool[i] for i in order[k::num_folds]} for k in range(num_folds)]
    keys = [(c.view, c.id) for c in labelled if c.id in set(pool)]
    folds = [{"train": {key for key in keys if key[1] not in v}, "val": {key for key in keys if key[1] in v}}
             for v in val_ids]
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([{s: sorted(case_name(*key) for key in f[s]) for s in ("train", "val")}
                                   for f in folds], indent=1))
        log.info("no splits_5fold.json shipped: wrote a %d-fold split (seed %d) to %s", num_folds, seed, out)
    return folds


def split_cases(lay: Layout, split: str, fold: int | None = None, num_folds: int = 5, seed: int = 0,
                folds_out=None) -> list[Case] | None:
    """The labelled cases of ``split`` (train | val | test): from the split lists, or for train /
    val of ``fold`` from the shipped folds (else ``make_folds``). None for a test split the layout
    does not define."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {SPLITS}")
    if fold is None or split == "test":
        missing = [lay.root / "splits" / v / f"{split}.txt" for v in lay.views if (v, split) not in lay.lists]
        if missing and split == "test" and len(missing) == len(lay.views):
            return None
        if missing:
            hint = ("use data.fold=0..4 (cross-validation needs no val list) or write it" if split == "val"
                    else "write it: one numeric id a line")
            raise BoneScanInputError(f"{missing[0]}: split list not found; {hint}")
        keys = {(v, i) for v in lay.views for i in lay.lists[(v, split)]}
    else:
        if not lay.folds and getattr(lay, "generated_folds", None) is None:
            lay.generated_folds = make_folds(lay, num_folds, seed, folds_out)
        folds = lay.folds or lay.generated_folds
        if not 0 <= int(fold) < len(folds):
            raise ValueError(f"data.fold={fold} but there are {len(folds)} folds (0..{len(folds) - 1})")
        keys = folds[int(fold)][split]
    cases = [c for c in lay.labelled() if (c.view, c.id) in keys]
    if not cases:
        raise BoneScanInputError(f"{lay.root}: the {split} split{'' if fold is None else f' of fold {fold}'} "
                                 f"has no labelled {'/'.join(lay.views)} case; check the split lists and data.view")
    return cases
