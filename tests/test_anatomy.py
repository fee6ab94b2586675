import numpy as np
import pytest

from bonepatch import anatomy as A


def _toy_label_map():
    """A crude upright skeleton drawn with rectangles (no phantom needed)."""
    lm = np.zeros((200, 80), np.int64)
    c = A.CLASS_IDS
    lm[10:40, 30:50] = c["skull"]
    lm[40:50, 38:42] = c["cervical_vertebrae"]
    lm[50:90, 37:43] = c["thoracic_vertebrae"]
    lm[90:110, 37:43] = c["lumbar_vertebrae"]
    lm[110:120, 37:43] = c["sacrum"]
    lm[100:118, 20:36] = c["pelvis"]
    lm[100:118, 44:60] = c["pelvis"]
    lm[52:90, 10:14] = c["humerus"]
    lm[52:90, 66:70] = c["humerus"]
    lm[118:170, 24:28] = c["femur"]
    lm[118:170, 52:56] = c["femur"]
    return lm


def test_names_and_ids():
    assert A.CLASSES[0] == "background" and A.NUM_CLASSES == 13
    assert A.CLASS_IDS["sternum"] == 5 and A.CLASS_IDS["femur"] == 12
    assert A.KEYPOINTS[14] == "iliac_l" and A.NUM_KEYPOINTS == 16
    with pytest.raises(KeyError, match="choose one of"):
        A.CLASS_IDS["tibia"]
    with pytest.raises(KeyError, match="skull_top"):
        A.RegionPatch("x", ("nose",), ("skull",))


def test_flip_index_is_an_involution_that_swaps_sides():
    idx = np.array(A.FLIP_INDEX)
    assert (idx[idx] == np.arange(A.NUM_KEYPOINTS)).all()
    for a, b in A.FLIP_PAIRS:
        assert A.KEYPOINTS[a].endswith("_l") and A.KEYPOINTS[b] == A.KEYPOINTS[a][:-2] + "_r"
    assert len(A.FLIP_PAIRS) == 5


def test_keypoints_from_mask_follow_the_definitions():
    kp = A.keypoints_from_mask(_toy_label_map())
    k = A.KEYPOINT_IDS
    assert kp.shape == (16, 3) and kp.dtype == np.float32
    assert kp[:, 2].all()
    np.testing.assert_allclose(kp[k["skull_top"], :2], [39.5, 10])
    np.testing.assert_allclose(kp[k["skull_base"], :2], [39.5, 40])
    np.testing.assert_allclose(kp[k["c7"], :2], [39.5, 49])
    np.testing.assert_allclose(kp[k["t12"], :2], [39.5, 89])
    np.testing.assert_allclose(kp[k["sacrum_tip"], :2], [39.5, 119])
    np.testing.assert_allclose(kp[k["shoulder_l"], :2], [11.5, 52])
    np.testing.assert_allclose(kp[k["elbow_r"], :2], [67.5, 89])
    np.testing.assert_allclose(kp[k["hip_l"], :2], [25.5, 118])
    np.testing.assert_allclose(kp[k["knee_r"], :2], [53.5, 169])
    np.testing.assert_allclose(kp[k["iliac_r"], :2], [51.5, 100])


def test_absent_and_cut_bones_are_invisible():
    lm = _toy_label_map()
    lm[lm == A.CLASS_IDS["sacrum"]] = 0
    lm[:, 60:][lm[:, 60:] == A.CLASS_IDS["humerus"]] = 0  # right arm missing
    lm[:20] = 0
    lm[0:20, 30:50] = A.CLASS_IDS["skull"]  # skull cut by the top edge
    kp = A.keypoints_from_mask(lm)
    k = A.KEYPOINT_IDS
    assert kp[k["sacrum_tip"], 2] == 0 and kp[k["shoulder_r"], 2] == 0 and kp[k["elbow_r"], 2] == 0
    assert kp[k["skull_top"], 2] == 0 and kp[k["skull_base"], 2] == 1
    assert kp[k["l5"], 2] == 1  # bottom of lumbar still defines l5


def test_flip_keypoints_matches_keypoints_of_flipped_mask():
    lm = _toy_label_map()
    lm[150:170, 52:56] = 0  # make it asymmetric
    kp = A.keypoints_from_mask(lm)
    flipped = A.keypoints_from_mask(lm[:, ::-1])
    np.testing.assert_allclose(A.flip_keypoints(kp, lm.shape[1]), flipped, atol=1e-4)


def test_default_patches_cover_all_bone_classes():
    covered = {c for p in A.DEFAULT_PATCHES for c in p.class_ids}
    assert covered == set(A.BONE_CLASSES)
    assert A.as_patches([{"name": "h", "keypoints": ["c7"], "classes": ["skull"]}])[0].class_ids == [1]


def test_patch_margins_from_config_and_validation():
    p = A.as_patches([{"name": "t", "keypoints": ["c7", "t12"], "classes": ["rib"], "margin": {"bottom": 0.4}}])[0]
    assert p.margins(0.15) == (0.15, 0.15, 0.15, 0.4)
    assert dict(A.DEFAULT_PATCHES[1].margin) == {"bottom": 0.45}  # the lower ribs hang below T12
    with pytest.raises(KeyError, match="below"):
        A.RegionPatch("t", ("c7",), ("rib",), (("below", 0.4),))
    with pytest.raises(ValueError, match="margins"):
        A.RegionPatch("t", ("c7",), ("rib",), {"top": -1})


def test_patch_config_equals_the_default_patches():
    """conf/patches/default.yaml is what the models use; anatomy.DEFAULT_PATCHES is what code and
    docs assume: they must not drift apart."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from bonepatch.anatomy import DEFAULT_PATCHES, as_patches

    spec = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/patches/default.yaml"))
    assert as_patches(spec) == DEFAULT_PATCHES
