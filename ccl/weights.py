"""The official weights of the benchmark configs, fetched on request: `fetch_weights` (`make checkpoints`).

The workflow never downloads; this is the one place that does, and only when a user asks. The list of
files is `WEIGHTS` (the benchmark configs' checkpoint paths are `checkpoints/<file>`, a test holds them
equal). Each file is fetched into `<dest>/.<file>.part`, resumed from its length with an HTTP range
request after an interruption, checked, and only then renamed to `<dest>/<file>`: a file under its
final name has always passed its check.

Checks, by what the publisher gives:
- Hugging Face (OpenCLIP): the sha256 of an LFS file, which the hub sends as `X-Linked-Etag` on the
  redirect of its `resolve/` URL;
- SAM: no hash, but each file name ends in the first six hex digits of the file's md5
  (`sam_vit_h_4b8939.pth`), which is checked;
- SAM2: nothing.
Every fetched file's sha256 goes to `<dest>/SHA256SUMS` (the `sha256sum` format), and every later call
checks the files against it, so a file that changed after its first download is refused.

    .venv/bin/python -m ccl.weights [--dest checkpoints] [--only sam_vit_h ...] [--list]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ccl.masks.backends.sam import SAM_CHECKPOINT_FILES, SAM_DOWNLOAD_URL
from ccl.tracks.backends.sam2_checkpoints import OFFICIAL_CHECKPOINTS as SAM2_CHECKPOINTS

SUMS_FILE = "SHA256SUMS"
PART_SUFFIX = ".part"
REJECTED_SUFFIX = ".rejected"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0

# open_clip's pretrained.py: ViT-B-16 laion2b_s34b_b88k is hf_hub 'laion/CLIP-ViT-B-16-laion2B-s34B-b88K/'
OPEN_CLIP_HF_REPO = "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"


@dataclass(frozen=True)
class Weight:
    name: str  # what --only selects, e.g. "sam_vit_h"
    file: str  # file name under the destination folder (the configs' checkpoint path is checkpoints/<file>)
    url: str  # the publisher's URL
    config_key: str  # the config key that names the file, e.g. "masks.sam_checkpoint"
    size_mb: int  # about, for the offline message
    hf_lfs_sha256: bool = False  # the publisher's sha256 is the hub's X-Linked-Etag of `url`
    md5_prefix: str | None = None  # the publisher's md5 prefix (SAM's file names carry it)


WEIGHTS: tuple[Weight, ...] = (
    Weight(
        name="sam_vit_h",
        file=SAM_CHECKPOINT_FILES["vit_h"],
        url=SAM_DOWNLOAD_URL + SAM_CHECKPOINT_FILES["vit_h"],
        config_key="masks.sam_checkpoint",
        size_mb=2445,
        md5_prefix=SAM_CHECKPOINT_FILES["vit_h"].rsplit("_", 1)[1].split(".")[0],
    ),
    Weight(
        name="sam2.1_hiera_l",
        file=SAM2_CHECKPOINTS["configs/sam2.1/sam2.1_hiera_l.yaml"].rsplit("/", 1)[1],
        url=SAM2_CHECKPOINTS["configs/sam2.1/sam2.1_hiera_l.yaml"],
        config_key="tracks.sam2_checkpoint",
        size_mb=857,
    ),
    Weight(
        name="open_clip_vit_b_16",
        file="open_clip_vit_b_16_laion2b_s34b_b88k.bin",
        url=f"https://huggingface.co/{OPEN_CLIP_HF_REPO}/resolve/main/open_clip_pytorch_model.bin",
        config_key="features.pretrained",
        size_mb=599,
        hf_lfs_sha256=True,
    ),
)


class WeightsError(RuntimeError):
    """A file could not be fetched or did not pass its check; the message says what to do."""


class OfflineError(WeightsError):
    """The publisher could not be reached; the message lists the URLs and where to put each file."""


def fetch_weights(
    names: Iterable[str] | None = None,
    *,
    dest: str | os.PathLike = "checkpoints",
    weights: Sequence[Weight] = WEIGHTS,
    progress: Callable[[str], None] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> list[Path]:
    """Fetch the weights named (all of `weights` by default) into `dest`, resuming partial files, and
    check every file against its publisher's hash and `dest`/SHA256SUMS; the paths, in order.

    Files already in place are checked, not fetched again. Raises OfflineError (with the URLs and paths
    to place by hand) when a publisher cannot be reached, WeightsError when a file fails its check (the
    file is kept aside under `<file>.rejected`, never under its final name) or a transfer breaks off
    (the partial file is kept: a rerun resumes it)."""
    chosen = _choose(weights, names)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    say = progress or _print_progress
    sums = read_sums(dest / SUMS_FILE)
    paths = []
    for i, w in enumerate(chosen):
        path = dest / w.file
        if path.is_file():
            _check_in_place(w, path, sums, say)
        else:
            try:
                _download(w, path, sums, say, timeout_s)
            except OfflineError as e:
                raise OfflineError(f"{e}\n{_by_hand(chosen[i:], dest)}") from e.__cause__
        paths.append(path)
    return paths


def fetch_hint(config_key: str, path: str | os.PathLike) -> str:
    """For a missing checkpoint that `make checkpoints` fetches (the file `config_key` names is one of
    WEIGHTS by name): "; `make checkpoints` fetches it to checkpoints/<file>"; else ""."""
    for w in WEIGHTS:
        if w.config_key == config_key and Path(path).name == w.file:
            return f"; `make checkpoints` fetches it to checkpoints/{w.file}"
    return ""


def read_sums(path: Path) -> dict[str, str]:
    """`sha256sum`-format lines → {file name: sha256}; a malformed line is refused, naming it."""
    if not path.is_file():
        return {}
    sums = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
        if m is None:
            raise WeightsError(
                f"{path}:{n}: not a sha256sum line ({line!r}); each line is '<64 hex digits>  <file name>', "
                "as `sha256sum` writes it"
            )
        sums[m[2]] = m[1]
    return sums


def _write_sums(path: Path, sums: dict[str, str]) -> None:
    from ccl.io.atomic import atomic_write_text

    atomic_write_text(path, "".join(f"{h}  {name}\n" for name, h in sorted(sums.items())))


def _choose(weights: Sequence[Weight], names: Iterable[str] | None) -> list[Weight]:
    if names is None:
        return list(weights)
    by_name = {w.name: w for w in weights}
    names = list(names)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise WeightsError(f"--only: unknown weights {unknown}; known: {sorted(by_name)}")
    return [by_name[n] for n in names]


def _by_hand(weights: Sequence[Weight], dest: Path) -> str:
    lines = ["To place them by hand, download each URL to the path beside it, then run `make checkpoints`:"]
    lines += [f"  {w.url}\n    -> {dest / w.file}  (about {w.size_mb} MB; {w.config_key})" for w in weights]
    return "\n".join(lines)


def _check_in_place(w: Weight, path: Path, sums: dict[str, str], say: Callable[[str], None]) -> None:
    from ccl.io.hashing import file_sha256

    sums_path = path.parent / SUMS_FILE
    say(f"{w.file}: checking the file in place")
    digest = file_sha256(path)
    recorded = sums.get(w.file)
    if recorded is not None and recorded != digest:
        raise WeightsError(
            f"{path}: sha256 {digest} differs from {recorded}, recorded in {sums_path} when it was fetched; "
            f"the file changed since. Move it aside (e.g. to {path.name}{REJECTED_SUFFIX}) and rerun "
            "`make checkpoints` to fetch it again"
        )
    if recorded is None:
        if w.md5_prefix is not None:
            _check_md5_prefix(w, path)
        sums[w.file] = digest
        _write_sums(sums_path, sums)
        say(f"{w.file}: placed by hand; its sha256 {digest} is now recorded in {sums_path}")


def _md5_mismatch(w: Weight, path: Path) -> str | None:
    """What is wrong with `path`'s md5 against the publisher's prefix, or None when it matches."""
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            md5.update(block)
    if md5.hexdigest().startswith(w.md5_prefix or ""):
        return None
    return (
        f"md5 {md5.hexdigest()} does not start with {w.md5_prefix}, as the publisher's file name says it does"
    )


def _check_md5_prefix(w: Weight, path: Path) -> None:
    problem = _md5_mismatch(w, path)
    if problem is not None:
        raise WeightsError(
            f"{path}: {problem}: not the official {w.file} (or a damaged copy). Move it aside and rerun "
            f"`make checkpoints`, or download {w.url} to {path} by hand"
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the redirect itself carries the hub's headers
        return None


def publisher_sha256(w: Weight, *, timeout_s: float = TIMEOUT_S) -> str | None:
    """The sha256 the publisher states for `w` (the hub's X-Linked-Etag), or None where it states none."""
    if not w.hf_lfs_sha256:
        return None
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(w.url, method="HEAD", headers={"User-Agent": "ccl-lgs"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            headers = response.headers
    except urllib.error.HTTPError as e:  # the 302 itself, as the redirect is not followed
        if e.code >= 400:
            raise WeightsError(f"{w.url}: HTTP {e.code} {e.reason} when asking for the file's hash") from e
        headers = e.headers
    except (urllib.error.URLError, OSError) as e:
        raise OfflineError(f"{w.url}: cannot reach the publisher ({_reason(e)})") from e
    etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip()
    etag = etag.removeprefix("W/").strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def _download(
    w: Weight, path: Path, sums: dict[str, str], say: Callable[[str], None], timeout_s: float
) -> None:
    sums_path = path.parent / SUMS_FILE
    expected = publisher_sha256(w, timeout_s=timeout_s)
    source = "the publisher's sha256"
    if expected is None and w.file in sums:  # fetched once before: the same bytes are expected again
        expected, source = sums[w.file], f"the sha256 recorded in {sums_path}"
    if expected is None and w.hf_lfs_sha256:
        say(f"{w.file}: the hub sent no sha256 for {w.url}; the first download's hash will be recorded")
    part = path.with_name(f".{path.name}{PART_SUFFIX}")
    _transfer(w, part, say, timeout_s)
    from ccl.io.hashing import file_sha256

    digest = file_sha256(part)
    problem = None
    if expected is not None and digest != expected:
        problem = f"sha256 {digest} differs from {expected} ({source})"
    elif w.md5_prefix is not None:
        problem = _md5_mismatch(w, part)
    if problem is not None:
        rejected = path.with_name(path.name + REJECTED_SUFFIX)
        os.replace(part, rejected)
        raise WeightsError(
            f"{w.url}: the downloaded file failed its check: {problem}. It was not installed as {path} "
            f"(kept as {rejected} to inspect). Rerun `make checkpoints` to fetch it afresh; if it fails "
            "again, the publisher's file differs from the one this project knows"
        )
    os.replace(part, path)
    sums[w.file] = digest
    _write_sums(sums_path, sums)
    say(f"{w.file}: done, sha256 {digest} ({'checked against ' + source if expected else 'recorded'})")


def _transfer(w: Weight, part: Path, say: Callable[[str], None], timeout_s: float) -> None:
    """Fetch `w.url` into `part`, continuing from the bytes already there (HTTP range)."""
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "ccl-lgs"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(w.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the range starts at the end: nothing is left to fetch
            total = re.search(r"/(\d+)", e.headers.get("Content-Range", ""))
            if total and int(total[1]) == have:
                return
            os.replace(part, part.with_name(part.name + REJECTED_SUFFIX))
            raise WeightsError(
                f"{w.url}: the partial file {part} is longer than the publisher's; it was moved aside, "
                "rerun `make checkpoints` to fetch the file afresh"
            ) from e
        raise WeightsError(f"{w.url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise OfflineError(f"{w.url}: cannot reach the publisher ({_reason(e)})") from e
    with response:
        if have and response.status != 206:  # the server ignored the range: start again
            say(f"{w.file}: the server does not resume; fetching from the start")
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if have:
            say(f"{w.file}: resuming at {have / 2**20:.1f} MB")
        meter = _Meter(w.file, have, total, say)
        try:
            with open(part, "ab" if have else "wb") as f:
                while block := response.read(CHUNK_BYTES):
                    f.write(block)
                    meter.add(len(block))
        except (OSError, urllib.error.URLError, ConnectionError, _incomplete_read()) as e:
            raise WeightsError(
                f"{w.url}: the transfer broke off at {part.stat().st_size / 2**20:.1f} MB ({_reason(e)}); "
                f"the part is kept in {part}: rerun `make checkpoints` to resume it"
            ) from e
    got = part.stat().st_size
    if total is not None and got != total:
        raise WeightsError(
            f"{w.url}: the transfer ended at {got} of {total} bytes; the part is kept in {part}: rerun "
            "`make checkpoints` to resume it"
        )
    meter.done()


def _incomplete_read() -> type[Exception]:
    import http.client

    return http.client.IncompleteRead


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    return f"{type(e).__name__}: {reason if reason is not None else e}"


class _Meter:
    """Progress lines: about every 2 s or every 10 % (a line each, so logs stay readable)."""

    def __init__(self, name: str, have: int, total: int | None, say: Callable[[str], None]):
        self.name, self.have, self.total, self.say = name, have, total, say
        self.start, self.start_bytes = time.monotonic(), have
        self.last_t, self.last_pct = self.start, -10.0

    def add(self, n: int) -> None:
        self.have += n
        now = time.monotonic()
        pct = 100.0 * self.have / self.total if self.total else 0.0
        if now - self.last_t >= 2.0 or pct - self.last_pct >= 10.0:
            self.last_t, self.last_pct = now, pct
            self.say(self._line(now))

    def done(self) -> None:
        self.say(self._line(time.monotonic()))

    def _line(self, now: float) -> str:
        rate = (self.have - self.start_bytes) / max(now - self.start, 1e-6) / 2**20
        of = (
            f" of {self.total / 2**20:.1f} MB ({100.0 * self.have / self.total:.0f} %)"
            if self.total
            else " MB"
        )
        return f"{self.name}: {self.have / 2**20:.1f}{of}, {rate:.1f} MB/s"


def _print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccl.weights",
        description="Fetch the official SAM, SAM2 and OpenCLIP weights of configs/lerf_ovs.yaml and "
        "configs/3dovs.yaml into checkpoints/ (resumable, checked by sha256).",
    )
    parser.add_argument("--dest", default="checkpoints", help="folder of the files (default: checkpoints)")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"only these of {[w.name for w in WEIGHTS]}"
    )
    parser.add_argument("--list", action="store_true", help="print the files, their URLs and config keys")
    args = parser.parse_args(argv)
    if args.list:
        for w in _choose(WEIGHTS, args.only):
            print(f"{w.name}\t{Path(args.dest) / w.file}\t{w.url}\t{w.config_key}")
        return 0
    try:
        paths = fetch_weights(args.only, dest=args.dest)
    except WeightsError as e:
        print(f"make checkpoints: {e}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
