"""Resuming an interrupted ``predict.py`` run into the same output folder (``resume=true``).

While it runs, each view's summary row is appended to a journal (``.summary.journal.jsonl``,
one JSON line per view, flushed to disk) as soon as its files are written; ``summary.csv`` is
written at the end (also after Ctrl-C) and the journal removed. A resumed run reads the rows of
``summary.csv`` and the journal (the journal's are newer), keeps every view whose row is ``ok``
or ``flag`` and whose files are all there, and redoes the rest (errors, half-done views, new
inputs). ``predict_run.json`` holds the options of the run; resuming with other options is
refused, so one folder never mixes results of two settings.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from . import predict_io as pio

JOURNAL = ".summary.journal.jsonl"
RUN_FILE = "predict_run.json"


def view_key(row: dict) -> tuple[str, str, str]:
    """(input, frame, panel) as strings: one view of one input."""
    return str(row.get("input", "")), str(row.get("frame", "")), str(row.get("panel", ""))


def read_rows(out: Path) -> dict[tuple, dict]:
    """The rows an earlier run left in ``out``: summary.csv, then the journal (newer) on top."""
    rows: dict[tuple, dict] = {}
    if (out / "summary.csv").is_file():
        with open(out / "summary.csv", newline="") as f:
            rows.update((view_key(r), r) for r in csv.DictReader(f))
    if (out / JOURNAL).is_file():
        for line in (out / JOURNAL).read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            rows[view_key(r)] = r
    return rows


def complete(out: Path, row: dict, parts: tuple[str, ...]) -> bool:
    """The view of ``row`` is done: ok or flag, with every expected file present."""
    return row.get("status") in ("ok", "flag") and bool(row.get("outputs")) and bool(parts) and all(
        (out / f"{row['outputs']}_{p}").is_file() for p in parts)


class Journal:
    """Append-only record of finished views; a line per row, on disk before the next view starts."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / JOURNAL
        self._f = open(self.path, "a", encoding="utf-8")

    def add(self, row: dict) -> None:
        self._f.write(json.dumps(row, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self, remove: bool) -> None:
        self._f.close()
        if remove:
            self.path.unlink(missing_ok=True)


def run_options(ckpt, options: dict) -> dict:
    """What must match for a resume: the checkpoint (path, size, modification time) and the options."""
    p = Path(ckpt)
    stat = p.stat() if p.is_file() else None
    return {"ckpt": str(p.resolve()), "ckpt_bytes": stat.st_size if stat else None,
            "ckpt_mtime": int(stat.st_mtime) if stat else None,
            "options": json.loads(json.dumps(options, default=str))}


def check_resume(out: Path, current: dict) -> str:
    """'' when the folder's earlier run used the same checkpoint and options, else what differs."""
    path = out / RUN_FILE
    if not path.is_file():
        return ""
    before = json.loads(path.read_text())
    diffs = [f"ckpt {before.get(k)} -> {current.get(k)}" for k in ("ckpt", "ckpt_bytes", "ckpt_mtime")
             if before.get(k) != current.get(k)][:1]
    old, new = before.get("options", {}), current["options"]
    diffs += [f"{k}={old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(diffs)


def write_run_file(out: Path, current: dict) -> None:
    pio.write_json(out / RUN_FILE, current, overwrite=True)
