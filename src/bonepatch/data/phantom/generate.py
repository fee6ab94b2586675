"""One phantom view (or an anterior + posterior pair), deterministic per ``(seed, index)``."""
from __future__ import annotations

from bonepatch.data.phantom.config import PhantomConfig
from bonepatch.data.phantom.imaging import render_view
from bonepatch.data.phantom.subject import sample_subject


def _sample(seed: int, index: int, subject: int, view: str, cfg: PhantomConfig) -> dict:
    subj = sample_subject(seed, subject, cfg)
    image, mask, kp, hot = render_view(subj, view, cfg)
    return {"image": image, "mask": mask, "keypoints": kp, "hotspots": hot,
            "meta": {"case_id": f"phantom_{seed}_{index:06d}", "view": view,
                     "spacing_mm": float(subj.mm_per_px), "source": "phantom"}}


def render(seed: int, index: int, config: PhantomConfig | None = None) -> dict:
    """Sample ``index`` of stream ``seed`` (one view; see the module docstring)."""
    cfg = config or PhantomConfig()
    if cfg.view == "both":
        return _sample(seed, index, index // 2, ("anterior", "posterior")[index % 2], cfg)
    return _sample(seed, index, index, cfg.view, cfg)


def render_pair(seed: int, subject: int, config: PhantomConfig | None = None) -> tuple[dict, dict]:
    """Anterior and posterior views of one subject (case ids of the ``view="both"`` stream)."""
    cfg = config or PhantomConfig()
    return (_sample(seed, 2 * subject, subject, "anterior", cfg),
            _sample(seed, 2 * subject + 1, subject, "posterior", cfg))
