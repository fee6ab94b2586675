import warnings

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from bonepatch.data.io import BoneScanInputError, body_found, probe_views, read_mask, read_views

ANT_IOP, POST_IOP = [1, 0, 0, 0, 0, -1], [-1, 0, 0, 0, 0, -1]


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unexpected "no body" warning fails the test
        yield


def test_real_nm_dicom_lossy():
    """The NEMA NM whole body (lossy JPEG 2000, ringing below 0) loads as clipped counts."""
    (v,) = read_views(get_testdata_file("JPEG2000.dcm"))
    assert v.image.shape == (1024, 256) and v.image.dtype == np.float32
    assert v.spacing_mm == pytest.approx(2.26) and v.view == "unknown" and v.frame == 0
    assert v.image.min() == 0 and v.image.max() == 245 and not v.flipped


def test_two_frame_view_codes_win_over_frame_order(tmp_path, toy_scan, write_dicom):
    post, ant = toy_scan, toy_scan[:, ::-1] // 2
    path = write_dicom(tmp_path / "wb.dcm", [post, ant], codes=[("LT POST", "LT POST"), ("RT ANT", "RT ANT")],
                       iops=[POST_IOP, ANT_IOP], RescaleSlope=2, RescaleIntercept=0)
    views = read_views(path)
    assert [(v.view, v.frame, v.flipped) for v in views] == [("posterior", 0, True), ("anterior", 1, False)]
    np.testing.assert_array_equal(views[0].image, 2 * post.astype(np.float32))  # slope applied
    np.testing.assert_array_equal(views[1].image, 2 * ant.astype(np.float32))
    assert views[0].spacing_mm == 2.4 and views[0].source == str(path)
    assert probe_views(path) == ["posterior", "anterior"]
    text = repr([{k: val for k, val in vars(v).items() if k != "image"} for v in views])
    assert "Doe" not in text and "4711" not in text


def test_two_frames_without_hints_use_frame_order(tmp_path, toy_scan, write_dicom):
    views = read_views(write_dicom(tmp_path / "plain.dcm", [toy_scan, toy_scan]))
    assert [v.view for v in views] == ["anterior", "posterior"]
    assert [v.flipped for v in views] == [False, True]  # posterior assumed stored as seen from behind


def test_posterior_stored_in_anterior_orientation_is_not_flipped(tmp_path, toy_scan, write_dicom):
    path = write_dicom(tmp_path / "p.dcm", [toy_scan, toy_scan], codes=[("ANTERIOR",) * 2, ("POSTERIOR",) * 2],
                       iops=[ANT_IOP, ANT_IOP])
    assert [(v.view, v.flipped) for v in read_views(path)] == [("anterior", False), ("posterior", False)]


@pytest.mark.parametrize("name, tags, view", [
    ("one", {}, "unknown"), ("one", {"ImageComments": "WB POST 20min"}, "posterior"),
    ("one", {"SeriesDescription": "Whole body ANT"}, "anterior"), ("wb_post", {}, "posterior"),
    ("wb_post", {"ImageComments": "ANTERIOR"}, "anterior")])
def test_single_frame_view_from_text(tmp_path, toy_scan, write_dicom, name, tags, view):
    (v,) = read_views(write_dicom(tmp_path / f"{name}.dcm", [toy_scan], **tags))
    assert v.view == view and v.image.shape == toy_scan.shape


def test_ct_refused_unless_forced(tmp_path, toy_scan, write_dicom):
    path = write_dicom(tmp_path / "ct.dcm", [toy_scan], modality="CT")
    with pytest.raises(BoneScanInputError, match=r"ct\.dcm.*CT DICOM, not NM.*force=True"):
        read_views(path)
    assert read_views(path, force=True)[0].image.shape == toy_scan.shape


def test_three_frame_dicom_refused(tmp_path, toy_scan, write_dicom):
    with pytest.raises(BoneScanInputError, match=r"three\.dcm.*3 frames"):
        read_views(write_dicom(tmp_path / "three.dcm", [toy_scan] * 3))


def test_truncated_files_refused(tmp_path, toy_scan, write_dicom):
    dcm = write_dicom(tmp_path / "cut.dcm", [toy_scan])
    dcm.write_bytes(dcm.read_bytes()[:-500])
    png = tmp_path / "cut.png"
    Image.fromarray(toy_scan).save(png)
    png.write_bytes(png.read_bytes()[:200])
    for path in (dcm, png):
        with pytest.raises(BoneScanInputError, match=rf"{path.name}.*truncated"):
            read_views(path)


@pytest.mark.parametrize("dtype, suffix", [(np.uint8, ".png"), (np.uint16, ".png"), (np.uint16, ".tif"),
                                           (np.float32, ".npy")])
def test_plain_image_formats_keep_counts(tmp_path, toy_scan, dtype, suffix):
    path = tmp_path / f"case7_post{suffix}"
    data = toy_scan.astype(dtype) * (300 if dtype == np.uint16 else 1)  # > 255 needs 16 bits
    np.save(path, data) if suffix == ".npy" else Image.fromarray(data).save(path)
    (v,) = read_views(path)
    np.testing.assert_array_equal(v.image, data.astype(np.float32))
    assert v.view == "posterior" and v.flipped and v.spacing_mm is None  # view from the file name


def test_gray_rgb_accepted_colour_refused(tmp_path, toy_scan):
    gray = np.repeat(toy_scan.astype(np.uint8)[..., None], 3, -1)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_views(tmp_path / "gray.png")[0].image, toy_scan.astype(np.float32))
    gray[..., 0] += 1
    Image.fromarray(gray).save(tmp_path / "rgb.png")
    with pytest.raises(BoneScanInputError, match=r"rgb\.png.*colour image.*grayscale"):
        read_views(tmp_path / "rgb.png")


@pytest.mark.parametrize("name, bad, message", [
    ("nan.npy", lambda a: np.where(a > 30, np.nan, a), "NaN"),
    ("neg.npy", lambda a: a - 5, "negative counts"),
    ("vol.npy", lambda a: np.stack([a, a, a, a]), "not a 2-D"),
])
def test_bad_arrays_refused(tmp_path, toy_scan, name, bad, message):
    np.save(tmp_path / name, bad(toy_scan.astype(np.float32)))
    with pytest.raises(BoneScanInputError, match=rf"{name}.*{message}"):
        read_views(tmp_path / name)


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "scan.bmp").write_bytes(b"BM")
    with pytest.raises(BoneScanInputError, match=r"scan\.bmp.*unsupported"):
        read_views(tmp_path / "scan.bmp")
    with pytest.raises(BoneScanInputError, match=r"nothere\.png.*does not exist"):
        read_views(tmp_path / "nothere.png")


def test_empty_and_noise_scans_warn(tmp_path, toy_scan):
    assert body_found(toy_scan)
    rng = np.random.default_rng(1)
    for name, image in (("empty.npy", np.zeros((256, 64))), ("noise.npy", rng.poisson(3.0, (256, 64)))):
        np.save(tmp_path / name, image.astype(np.float32))
        assert not body_found(image)
        with pytest.warns(UserWarning, match=rf"{name}.*no body found"):
            assert read_views(tmp_path / name)[0].image.shape == (256, 64)


def test_read_mask_formats_and_errors(tmp_path, toy_mask):
    Image.fromarray(toy_mask).save(tmp_path / "m.png")
    palette = Image.fromarray(toy_mask, mode="P")
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    palette.save(tmp_path / "p.png")
    for name in ("m.png", "p.png"):  # gray ids, and palette indices (nnU-Net masks often are)
        got = read_mask(tmp_path / name, shape=toy_mask.shape)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, toy_mask)
    with pytest.raises(BoneScanInputError, match=r"m\.png.*differs from its image size"):
        read_mask(tmp_path / "m.png", shape=(64, 48))
    bad = toy_mask.copy()
    bad[0, 0] = 13
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(BoneScanInputError, match=r"bad\.png.*\[13\] outside 0\.\.12"):
        read_mask(tmp_path / "bad.png")
