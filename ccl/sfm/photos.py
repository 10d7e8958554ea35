"""A folder of photos (`source: images`), listed and checked before any SfM work.

`check_photo_folder` reads every photo's header (size, EXIF orientation), never its pixels, and refuses
what SfM cannot use: fewer than three photos, photos in a format to convert first (HEIC, RAW), files
named as images that are none, two photos that would be one frame, sizes that a single camera cannot
have, an EXIF orientation that disagrees with the pixel size (pixels already turned, the tag kept). What is fine but worth saying comes back as notes: files that are not photos (ignored), EXIF-rotated
photos (SfM sees them upright, as a photo viewer shows them), a mix of JPEG and PNG (COLMAP reads both;
nothing downstream depends on the format).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ccl.scene.colmap import detect_format

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # compared lower-case
CONVERT_FIRST = (".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2")
MIN_PHOTOS = 3  # two views fix a pose pair; a held-out view and the splat's training need one more
EXIF_ORIENTATION_TAG = 0x0112
EXIF_IFD = 0x8769  # the Exif sub-IFD, which holds the camera's pixel size:
EXIF_PIXEL_X, EXIF_PIXEL_Y = 0xA002, 0xA003  # PixelXDimension, PixelYDimension
KEY = "scenes.<scene>.path"  # in messages: the config key naming the folder


@dataclass(frozen=True)
class Photo:
    path: Path  # absolute
    name: str  # path relative to the folder, "/"-separated: the image name in the COLMAP model
    width: int  # as a viewer shows it: after the EXIF rotation
    height: int
    orientation: int  # EXIF orientation, 1 = stored upright
    format: str  # "JPEG", "PNG", ... (PIL's name)

    @property
    def frame(self) -> str:
        return Path(self.name).stem

    @property
    def folder(self) -> str:
        return str(Path(self.name).parent)


@dataclass(frozen=True)
class PhotoSet:
    folder: Path  # absolute
    photos: tuple[Photo, ...]  # in natural name order
    ignored: tuple[str, ...]  # files that are not photos, relative names
    notes: tuple[str, ...]  # what is fine but worth a line in the log

    @property
    def sizes(self) -> Counter:
        return Counter((p.width, p.height) for p in self.photos)


def existing_colmap_model(
    folder: str | os.PathLike, *, colmap_model: str = "sparse/0", images: str = "images"
) -> bool:
    """Whether `folder` is already a COLMAP scene (images/ beside a model in `colmap_model`)."""
    folder = Path(folder)
    return (folder / images).is_dir() and detect_format(folder / colmap_model) is not None


def list_photo_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under `folder` with a photo's extension (hidden files and folders skipped), sorted."""
    from ccl.scene.ops import natural_key

    folder = Path(folder)
    out = [p for p in _files(folder) if p.suffix.lower() in PHOTO_EXTENSIONS]
    return sorted(out, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def _files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return out


def check_photo_folder(folder: str | os.PathLike, *, camera_mode: str = "per_size") -> PhotoSet:
    """The photos under `folder` (sub-folders included), checked; raises FileNotFoundError / ValueError
    naming the files, the config key and the fix."""
    from PIL import Image, UnidentifiedImageError

    from ccl.scene.ops import natural_key

    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: photo folder not found; set the scene's `path` ({KEY}) to the folder of photos"
        )
    files = sorted(_files(folder), key=lambda p: natural_key(p.relative_to(folder).as_posix()))
    rel = {p: p.relative_to(folder).as_posix() for p in files}
    convert = [rel[p] for p in files if p.suffix.lower() in CONVERT_FIRST]
    if convert:
        raise ValueError(
            f"{folder}: {len(convert)} photo(s) in a format COLMAP does not read: {convert[:6]}; convert them "
            "to JPEG (e.g. `heif-convert IMG.HEIC IMG.jpg`, or export as JPEG from the phone or a RAW "
            f"developer) in the folder ({KEY}), then rerun"
        )
    photos, unreadable, turned_twice = [], [], []
    for p in files:
        if p.suffix.lower() not in PHOTO_EXTENSIONS:
            continue
        try:
            with Image.open(p) as im:
                w, h, fmt = im.width, im.height, im.format or p.suffix[1:].upper()
                exif = im.getexif()
                orientation = int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)
                pixel_xy = tuple(exif.get_ifd(EXIF_IFD).get(t) for t in (EXIF_PIXEL_X, EXIF_PIXEL_Y))
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            unreadable.append(f"{rel[p]} ({type(e).__name__})")
            continue
        if orientation in (5, 6, 7, 8):  # a quarter turn: the viewer shows it w and h swapped
            if w != h and pixel_xy == (h, w):  # the camera's pixels stored turned: the tag was kept after
                turned_twice.append(f"{rel[p]} ({w}x{h}, camera's {h}x{w}, orientation {orientation})")
            w, h = h, w
        photos.append(Photo(p, rel[p], w, h, orientation, fmt))
    if unreadable:
        raise ValueError(
            f"{folder}: {len(unreadable)} file(s) named as photos cannot be read as images: {unreadable[:6]}; "
            f"replace each with the photo it should be, or move it out of the folder ({KEY})"
        )
    if turned_twice:  # an editor turned the pixels upright and kept the tag: SfM would turn them again
        raise ValueError(
            f"{folder}: {len(turned_twice)} photo(s) whose EXIF orientation disagrees with their pixel size: "
            f"{turned_twice[:6]}; their pixels are already turned (width and height are the camera's "
            "swapped) but the orientation tag still asks for a quarter turn, so they would be used sideways. "
            "Reset the tag (e.g. `exiftool -Orientation=1 -n PHOTO.jpg`) or export them again from the "
            f"editor that turned them, in the folder ({KEY})"
        )
    ignored = tuple(rel[p] for p in files if p.suffix.lower() not in PHOTO_EXTENSIONS)
    if len(photos) < MIN_PHOTOS:
        seen = f"only {[p.name for p in photos]}" if photos else "no photos"
        extra = f" (other files, not used: {list(ignored[:6])})" if ignored else ""
        raise ValueError(
            f"{folder}: {seen}{extra}; structure from motion needs at least {MIN_PHOTOS} overlapping photos "
            f"(JPEG or PNG) of the scene: add photos to the folder ({KEY}), tens taken around the scene"
        )
    by_frame: dict[str, list[str]] = {}
    for p in photos:
        by_frame.setdefault(p.frame, []).append(p.name)
    twins = [names for names in by_frame.values() if len(names) > 1]
    if twins:
        raise ValueError(
            f"{folder}: {len(twins)} name(s) shared by several photos, which would be one frame: {twins[:4]}; "
            "a frame is named by its file name without extension: rename one of each (e.g. IMG_1.jpg and "
            f"IMG_1.png; or a/IMG_1.jpg and b/IMG_1.jpg) in the folder ({KEY})"
        )
    sizes = Counter((p.width, p.height) for p in photos)
    if camera_mode == "single" and len(sizes) > 1:
        (common, _), *_ = sizes.most_common()
        odd = [f"{p.name} ({p.width}x{p.height})" for p in photos if (p.width, p.height) != common]
        raise ValueError(
            f"{folder}: sfm.camera_mode is 'single' (one camera for every photo), but the photos have "
            f"{len(sizes)} sizes: most are {common[0]}x{common[1]}, not {odd[:5]}; set `sfm: {{camera_mode: "
            "per_size}}` (one camera per size), or move the photos of another camera out of the folder"
        )
    notes = []
    if ignored:
        notes.append(
            f"{len(ignored)} file(s) in {folder} are not photos and are not used: {list(ignored[:6])}"
        )
    rotated = [p.name for p in photos if p.orientation != 1]
    if rotated:
        notes.append(
            f"{len(rotated)} photo(s) carry an EXIF rotation and are used upright, as a photo viewer shows "
            f"them: {rotated[:6]}"
        )
    formats = Counter(p.format for p in photos)
    if len(formats) > 1:
        notes.append(f"photos of {len(formats)} formats ({dict(formats)}): fine, each is read as it is")
    if len(sizes) > 1 and camera_mode == "per_size":
        notes.append(
            f"photos of {len(sizes)} sizes ({', '.join(f'{w}x{h}: {n}' for (w, h), n in sizes.most_common())}): "
            "one camera per size (sfm.camera_mode: per_size)"
        )
    return PhotoSet(folder, tuple(photos), ignored, tuple(notes))
