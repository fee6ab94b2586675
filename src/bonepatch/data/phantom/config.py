"""Phantom settings (``PhantomConfig``): plain types, all defaulted, so Hydra can instantiate them."""
from __future__ import annotations

from dataclasses import dataclass

VIEWS = ("both", "anterior", "posterior")
#: "region": the rib cage as one region per side on both views (the real maps' rule);
#: "region_stripes": region anterior, rib arcs grown by 1.3 px posterior (phantom v1);
#: "arcs": only the arcs on both views.
RIB_LABELS = ("region", "region_stripes", "arcs")
#: "reference": the label rules of the real 12-region maps (docs/phantom.md); "anatomic": paint
#: each bone where it is (phantom v1: spine over sternum, whole head and whole scapula blade).
CONVENTIONS = ("reference", "anatomic")


@dataclass
class PhantomConfig:
    """Phantom settings (plain types, all defaulted, so Hydra can instantiate it).

    Probabilities are per subject; ranges are ``(min, max)``; ``counts_range`` is the total
    counts of one view (log-uniform), ``fwhm_mm_range`` the collimator blur. ``mm_per_px`` is the
    pixel size; with ``spacing_scale_range`` each subject draws its own, ``mm_per_px`` times a
    uniform factor (patients look bigger or smaller in the frame; ``meta["spacing_mm"]``
    reports it; relative, so it holds at any ``height``/``mm_per_px``).
    """

    height: int = 1024
    width: int = 256
    mm_per_px: float = 2.4
    spacing_scale_range: tuple = (1.0, 1.0)
    view: str = "both"
    rib_label: str = "region"
    convention: str = "reference"
    height_cm_range: tuple = (150.0, 195.0)
    child_prob: float = 0.08
    truncate_prob: float = 0.08
    missing_limb_prob: float = 0.03
    scoliosis_prob: float = 0.12
    superscan_prob: float = 0.03
    lesion_prob: float = 0.35
    max_lesions: int = 15
    artefact_prob: float = 0.15
    counts_range: tuple = (1.4e5, 1.0e6)
    fwhm_mm_range: tuple = (7.0, 12.0)
    shift_px: float = 4.0       # sd of the body midline's offset from the frame centre
    arms_over_pelvis_prob: float = 0.1

    def __post_init__(self):
        for name, options in (("view", VIEWS), ("rib_label", RIB_LABELS), ("convention", CONVENTIONS)):
            if getattr(self, name) not in options:
                raise ValueError(f"PhantomConfig.{name}={getattr(self, name)!r}; choose one of {options}")
        if self.height % 2 or self.width % 2 or self.height < 64 or self.width < 32:
            raise ValueError(f"PhantomConfig.height/width must be even and >= 64/32, got "
                             f"{self.height}x{self.width}")
        for name in ("height_cm_range", "counts_range", "fwhm_mm_range", "spacing_scale_range"):
            lo, hi = (float(v) for v in getattr(self, name))  # Hydra passes lists
            if not 0 < lo <= hi:
                raise ValueError(f"PhantomConfig.{name} must be (min, max) with 0 < min <= max")
            setattr(self, name, (lo, hi))
        for name in ("child_prob", "truncate_prob", "missing_limb_prob", "scoliosis_prob",
                     "superscan_prob", "lesion_prob", "artefact_prob", "arms_over_pelvis_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"PhantomConfig.{name} must lie in [0, 1]")
        if self.max_lesions < 0 or self.mm_per_px <= 0 or self.shift_px < 0:
            raise ValueError("PhantomConfig.max_lesions and shift_px must be >= 0 and mm_per_px > 0")
