"""Dataset problems found before training: each names the file, what is wrong and the fix.

Collected rather than raised one at a time, so a user sees every problem of a dataset at once
(``bonepatch.verify``, ``bonepatch.data.bs80k_layout``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from bonepatch.data.io import BoneScanInputError

#: Problem kinds, in report order.
KINDS = ("layout", "class labels", "unknown id", "duplicate id", "image without mask", "mask without image",
         "unknown view", "leakage", "unreadable", "size mismatch", "label ids", "posterior sternum", "empty mask")


@dataclass(frozen=True)
class Problem:
    """One problem: ``kind`` (one of KINDS), the ``file`` it is in, ``message`` and ``fix``."""

    kind: str
    file: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}; fix: {self.fix}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "file": self.file, "message": self.message, "fix": self.fix}


class DatasetProblems(BoneScanInputError):
    """Raised with every problem found; ``.problems`` holds them."""

    def __init__(self, problems: list[Problem], what: str = "dataset", limit: int | None = 20):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems, what, limit))


def format_problems(problems: list[Problem], what: str = "dataset", limit: int | None = 20) -> str:
    """A report grouped by kind: a count line, then up to ``limit`` problems per kind (None = all)."""
    if not problems:
        return f"{what}: no problems found"
    groups: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        groups[p.kind].append(p)
    order = sorted(groups, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS))
    lines = [f"{what}: {len(problems)} problem(s): " + ", ".join(f"{len(groups[k])} {k}" for k in order)]
    for kind in order:
        items = groups[kind]
        lines.append(f"[{kind}] ({len(items)})")
        shown = items if limit is None else items[:limit]
        lines += [f"  {p}" for p in shown]
        if len(shown) < len(items):
            lines.append(f"  ... and {len(items) - len(shown)} more of this kind")
    return "\n".join(lines)
