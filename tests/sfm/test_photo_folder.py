"""A `source: images` folder's bad input, each refused (or noted) with the files named and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scene.scene_testkit import make_colmap_scene

from ccl.sfm import check_photo_folder, existing_colmap_model, list_photo_files
from ccl.sfm.photos import EXIF_IFD, EXIF_ORIENTATION_TAG, EXIF_PIXEL_X, EXIF_PIXEL_Y
from ccl.sfm.poses import _stage_upright


def _photo(path, w=64, h=48, seed=0, orientation=None, fmt=None, camera_wh=None):
    """A photo of w x h stored pixels; `camera_wh`: the Exif PixelX/YDimension the camera wrote."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION_TAG] = orientation
    if camera_wh is not None:
        exif.get_ifd(EXIF_IFD).update({EXIF_PIXEL_X: camera_wh[0], EXIF_PIXEL_Y: camera_wh[1]})
    img.save(path, format=fmt, exif=exif.tobytes() if len(exif) or camera_wh else b"")
    return path


def _folder(tmp_path, n=4, **kw):
    for i in range(n):
        _photo(tmp_path / f"IMG_{i}.jpg", seed=i, **kw)
    return tmp_path


def test_a_good_folder_lists_its_photos_in_name_order(tmp_path):
    for i in (10, 2, 1):
        _photo(tmp_path / f"IMG_{i}.jpg", seed=i)
    photos = check_photo_folder(tmp_path)
    assert [p.name for p in photos.photos] == ["IMG_1.jpg", "IMG_2.jpg", "IMG_10.jpg"]
    assert photos.notes == () and photos.ignored == ()
    assert [p.name for p in list_photo_files(tmp_path)] == ["IMG_1.jpg", "IMG_2.jpg", "IMG_10.jpg"]


def test_fewer_than_three_photos_are_refused_naming_them(tmp_path):
    _folder(tmp_path, n=2)
    with pytest.raises(
        ValueError, match=r"only \['IMG_0.jpg', 'IMG_1.jpg'\].*at least 3.*scenes.<scene>.path"
    ):
        check_photo_folder(tmp_path)


def test_an_empty_folder_says_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no photos \(other files, not used: \['notes.txt'\]\)"):
        check_photo_folder(tmp_path)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="photo folder not found"):
        check_photo_folder(tmp_path / "nope")


def test_non_image_files_are_ignored_and_named(tmp_path):
    _folder(tmp_path)
    (tmp_path / "IMG_0.xmp").write_text("<xmp/>")
    (tmp_path / "list.txt").write_text("a")
    (tmp_path / ".DS_Store").write_bytes(b"\0")  # hidden: skipped without a word
    photos = check_photo_folder(tmp_path)
    assert len(photos.photos) == 4
    assert photos.ignored == ("IMG_0.xmp", "list.txt")
    assert any("not photos" in n and "IMG_0.xmp" in n for n in photos.notes)


def test_heic_and_raw_are_refused_with_the_conversion(tmp_path):
    _folder(tmp_path)
    (tmp_path / "IMG_9.HEIC").write_bytes(b"\0" * 16)
    (tmp_path / "IMG_8.dng").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"IMG_8.dng.*IMG_9.HEIC.*convert them to JPEG"):
        check_photo_folder(tmp_path)


def test_a_file_named_as_a_photo_that_is_none_is_refused(tmp_path):
    _folder(tmp_path)
    (tmp_path / "IMG_5.jpg").write_text("not a jpeg")
    with pytest.raises(ValueError, match=r"cannot be read as images: \['IMG_5.jpg"):
        check_photo_folder(tmp_path)


def test_two_photos_of_one_frame_name_are_refused(tmp_path):
    _folder(tmp_path)
    _photo(tmp_path / "IMG_0.png", fmt="PNG")
    with pytest.raises(ValueError, match=r"\['IMG_0.jpg', 'IMG_0.png'\].*rename one"):
        check_photo_folder(tmp_path)


def test_mixed_sizes_are_one_camera_each_unless_single_is_asked(tmp_path):
    _folder(tmp_path)
    _photo(tmp_path / "IMG_7.jpg", w=80, h=60)
    photos = check_photo_folder(tmp_path)
    assert photos.sizes == {(64, 48): 4, (80, 60): 1}
    assert any("2 sizes" in n and "per_size" in n for n in photos.notes)
    with pytest.raises(
        ValueError, match=r"camera_mode is 'single'.*IMG_7.jpg \(80x60\).*camera_mode: per_size"
    ):
        check_photo_folder(tmp_path, camera_mode="single")


def test_mixed_jpeg_and_png_is_fine_and_said(tmp_path):
    _folder(tmp_path)
    _photo(tmp_path / "IMG_6.png", fmt="PNG")
    photos = check_photo_folder(tmp_path)
    assert {p.format for p in photos.photos} == {"JPEG", "PNG"}
    assert any("2 formats" in n for n in photos.notes)


def test_exif_rotated_photos_are_staged_upright(tmp_path):
    src = _folder(tmp_path / "photos")
    _photo(src / "IMG_9.jpg", w=64, h=48, orientation=6)  # stored landscape, shown portrait
    photos = check_photo_folder(src)
    rotated = next(p for p in photos.photos if p.name == "IMG_9.jpg")
    assert (rotated.width, rotated.height, rotated.orientation) == (48, 64, 6)
    assert any("EXIF rotation" in n and "IMG_9.jpg" in n for n in photos.notes)
    staged = _stage_upright(photos, tmp_path / "staged")
    with Image.open(staged / "IMG_9.jpg") as im:
        assert im.size == (48, 64) and im.getexif().get(EXIF_ORIENTATION_TAG, 1) == 1
    assert (staged / "IMG_0.jpg").is_symlink()  # upright photos are linked, never copied


def test_a_photo_turned_upright_with_its_orientation_tag_kept_is_refused_with_the_fix(tmp_path):
    _folder(tmp_path)
    # the camera's 64 x 48 pixels with orientation 6 (a quarter turn to show), as a phone writes it: fine
    _photo(tmp_path / "IMG_8.jpg", w=64, h=48, orientation=6, camera_wh=(64, 48))
    assert check_photo_folder(tmp_path)
    # an editor turned the pixels to 48 x 64 and kept the tag: a viewer or SfM would turn them again
    _photo(tmp_path / "IMG_9.jpg", w=48, h=64, orientation=6, camera_wh=(64, 48))
    with pytest.raises(ValueError) as e:
        check_photo_folder(tmp_path)
    msg = str(e.value)
    assert "IMG_9.jpg (48x64, camera's 64x48, orientation 6)" in msg and "IMG_8.jpg" not in msg
    assert "exiftool -Orientation=1 -n" in msg and "scenes.<scene>.path" in msg


def test_a_folder_that_is_a_colmap_scene_is_recognised(tmp_path):
    make_colmap_scene(tmp_path / "scene")
    assert existing_colmap_model(tmp_path / "scene")
    assert not existing_colmap_model(_folder(tmp_path / "photos"))
