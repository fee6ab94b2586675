"""The head of the phantom: calvarium, face, mandible (head units, see :mod:`body`).

What a real scan shows: a bright calvarium rim over a fainter vault, dark orbits framed by the
frontal bone, zygomas and nasal bones, a bright maxilla with the alveolar ridge, and the
mandible. Labels (``convention="reference"``, the real maps' rule): the whole head on the
anterior view (a label-only hull fills the face), the cranium only on the posterior view (the
face lies in front of the occiput there and the posterior cervical column starts at the skull
base, 0.088). ``"anatomic"`` labels every head bone on both views.
"""
from __future__ import annotations

#: Cranium ellipse (centre y, semi-axes) in head units; its top is the skull_top keypoint.
CRANIUM = (0.047, 0.046, 0.045)
CHIN = 0.1275  # lowest point of the mandible (head units)


def add_head(b) -> None:
    """Head shapes of body ``b`` (a :class:`body.Body`)."""
    u, ref = b.u, b.ref
    face_label = "" if (b.post and ref) else "skull"
    cy, ax, ay = CRANIUM
    b.ends["skull_top"] = (b.add("ellipse", [0, cy], [ax, ay], u["skull"], "skull", "skull", 0.5,
                                 18, shell=0.16, head=True), True)
    b.add("ellipse", [0, 0.036], [0.037, 0.027], u["skull"] * 0.5, depth=0.5, thick=18, head=True)
    # superior orbital rims, lateral rims and zygomas, nasal bones, maxilla, alveolar ridge
    for sd in (-1, 1):
        b.add("tube", [[sd * 0.006, 0.052], [sd * 0.02, 0.049], [sd * 0.034, 0.053]], 0.004,
              u["face"] * 0.45, face_label, "skull", 0.15, 18, head=True)
        b.add("tube", [[sd * 0.038, 0.056], [sd * 0.037, 0.072], [sd * 0.026, 0.081]], 0.0045,
              u["face"] * 0.75, face_label, "skull", 0.2, 18, head=True)
    b.add("tube", [[0, 0.058], [0, 0.078]], 0.0035, u["face"] * 0.7, face_label, "skull", 0.1, 18,
          head=True)
    b.add("ellipse", [0, 0.088], [0.02, 0.011], u["face"], face_label, "skull", 0.12, 18, head=True)
    b.add("ellipse", [0, 0.1], [0.019, 0.006], u["face"] * 0.9, face_label, "skull", 0.15, 18,
          head=True)
    b.add("tube", [[-0.035, 0.078], [-0.031, 0.104], [-0.016, 0.119], [0, CHIN - 0.0055],
                   [0.016, 0.119], [0.031, 0.104], [0.035, 0.078]], 0.0055, u["face"] * 0.75,
          face_label, "skull", 0.2, 18, head=True)
    if face_label:  # label-only hull: the whole head is one region (public masks)
        b.add("poly", [[-0.046, 0.05], [0.046, 0.05], [0.04, 0.095], [0.02, 0.12], [0, CHIN],
                       [-0.02, 0.12], [-0.04, 0.095]], 0.0, 0.0, "skull", "", head=True)
    b.add("ellipse", [0, 0.06], [0.052, 0.064], 1.0, head=True, soft=True)
