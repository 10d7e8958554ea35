"""`ccl.weights.fetch_weights` against a loopback HTTP server that speaks HTTP ranges (written here): an
interrupted transfer resumes from where it broke off, a file failing its publisher's hash (the hub's
X-Linked-Etag, SAM's md5 prefix) or the recorded one is never installed, an unreachable publisher stops
with the URLs and paths to place by hand; and the benchmark configs name exactly the files it fetches."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import pytest
import yaml

from ccl.config import REPO_ROOT
from ccl.weights import (
    OPEN_CLIP_HF_REPO,
    SUMS_FILE,
    WEIGHTS,
    OfflineError,
    Weight,
    WeightsError,
    fetch_weights,
    read_sums,
)

CONTENT = bytes(range(256)) * 4096  # 1 MiB


class _Server:
    """Files by URL path; Range requests answered with 206; the first `cut_after` bytes of a GET sent
    and the connection closed (a broken transfer); `redirects` path -> (target, extra headers)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, tuple[str, dict[str, str]]] = {}
        self.cut_after: int | None = None
        self.honour_range = True
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _redirect(self) -> bool:
                if self.path not in server.redirects:
                    return False
                target, extra = server.redirects[self.path]
                self.send_response(302)
                self.send_header("Location", target)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def do_HEAD(self):
                if not self._redirect():
                    self.send_response(200 if self.path in server.files else 404)
                    self.end_headers()

            def do_GET(self):
                if self._redirect():
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                ask = self.headers.get("Range")
                server.ranges.append(ask)
                start = 0
                if ask and server.honour_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", ask)[1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _weight(url: str, file: str = "model.pt", **kw) -> Weight:
    return Weight(name="model", file=file, url=url, config_key="masks.sam_checkpoint", size_mb=1, **kw)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    server.files["/model.pt"] = CONTENT
    server.cut_after = 300_000
    w = _weight(server.url + "/model.pt")
    lines: list[str] = []
    with pytest.raises(WeightsError, match="rerun `make checkpoints` to resume") as e:
        fetch_weights(dest=tmp_path, weights=[w], progress=lines.append)
    part = tmp_path / ".model.pt.part"
    assert 0 < part.stat().st_size < len(CONTENT), e.value
    assert not (tmp_path / "model.pt").exists()

    have = part.stat().st_size
    (path,) = fetch_weights(dest=tmp_path, weights=[w], progress=lines.append)
    assert server.ranges == [None, f"bytes={have}-"]
    assert path.read_bytes() == CONTENT
    assert not part.exists()
    assert read_sums(tmp_path / SUMS_FILE) == {"model.pt": _sha(CONTENT)}  # first download's hash
    assert any("resuming at" in line for line in lines) and any("100 %" in line for line in lines)


def test_a_server_that_ignores_the_range_is_fetched_from_the_start(server, tmp_path):
    server.files["/model.pt"] = CONTENT
    server.cut_after = 100_000
    w = _weight(server.url + "/model.pt")
    with pytest.raises(WeightsError, match="resume"):
        fetch_weights(dest=tmp_path, weights=[w], progress=lambda _: None)
    server.honour_range = False  # answers 200 with the whole file: appending would corrupt it
    lines: list[str] = []
    (path,) = fetch_weights(dest=tmp_path, weights=[w], progress=lines.append)
    assert path.read_bytes() == CONTENT
    assert any("does not resume; fetching from the start" in line for line in lines)


def test_the_hubs_sha256_is_checked_and_a_wrong_one_installs_nothing(server, tmp_path):
    server.files["/lfs/blob"] = CONTENT
    server.redirects["/resolve/main/model.bin"] = ("/lfs/blob", {"X-Linked-Etag": f'"{_sha(CONTENT)}"'})
    w = _weight(server.url + "/resolve/main/model.bin", file="clip.bin", hf_lfs_sha256=True)
    lines: list[str] = []
    (path,) = fetch_weights(dest=tmp_path, weights=[w], progress=lines.append)
    assert path.read_bytes() == CONTENT
    assert "checked against the publisher's sha256" in lines[-1]

    bad = tmp_path / "bad"
    server.redirects["/resolve/main/model.bin"] = ("/lfs/blob", {"X-Linked-Etag": '"' + "0" * 64 + '"'})
    with pytest.raises(WeightsError, match="failed its check: sha256") as e:
        fetch_weights(dest=bad, weights=[w], progress=lines.append)
    assert "It was not installed as" in str(e.value)
    assert not (bad / "clip.bin").exists()
    assert (bad / "clip.bin.rejected").read_bytes() == CONTENT  # kept to inspect, under no trusted name
    assert read_sums(bad / SUMS_FILE) == {}


def test_sams_md5_prefix_is_checked(server, tmp_path):
    md5 = hashlib.md5(CONTENT).hexdigest()
    server.files["/sam_vit_x_good.pth"] = CONTENT
    good = _weight(server.url + "/sam_vit_x_good.pth", file=f"sam_vit_x_{md5[:6]}.pth", md5_prefix=md5[:6])
    (path,) = fetch_weights(dest=tmp_path, weights=[good], progress=lambda _: None)
    assert path.read_bytes() == CONTENT

    wrong = "ffffff" if not md5.startswith("ffffff") else "000000"
    bad = _weight(server.url + "/sam_vit_x_good.pth", file=f"sam_vit_x_{wrong}.pth", md5_prefix=wrong)
    with pytest.raises(WeightsError, match=f"does not start with {wrong}"):
        fetch_weights(dest=tmp_path, weights=[bad], progress=lambda _: None)
    assert not (tmp_path / bad.file).exists()


def test_a_file_changed_after_its_first_download_is_refused(server, tmp_path):
    server.files["/model.pt"] = CONTENT
    w = _weight(server.url + "/model.pt")
    (path,) = fetch_weights(dest=tmp_path, weights=[w], progress=lambda _: None)
    assert fetch_weights(dest=tmp_path, weights=[w], progress=lambda _: None) == [path]  # checked, kept
    assert server.ranges == [None]  # not fetched again

    path.write_bytes(CONTENT[:-1] + b"x")
    with pytest.raises(WeightsError, match="the file changed since") as e:
        fetch_weights(dest=tmp_path, weights=[w], progress=lambda _: None)
    assert "Move it aside" in str(e.value) and "delete" not in str(e.value).lower()

    # fetched afresh elsewhere, the publisher now sending other bytes: the recorded hash refuses them
    path.rename(tmp_path / "model.pt.mine")
    server.files["/model.pt"] = CONTENT[::-1]
    with pytest.raises(WeightsError, match=f"the sha256 recorded in {re.escape(str(tmp_path / SUMS_FILE))}"):
        fetch_weights(dest=tmp_path, weights=[w], progress=lambda _: None)
    assert not path.exists()


def test_a_file_placed_by_hand_is_checked_and_recorded(tmp_path):
    md5 = hashlib.md5(CONTENT).hexdigest()
    w = _weight("http://127.0.0.1:9/never", file=f"sam_{md5[:6]}.pth", md5_prefix=md5[:6])
    (tmp_path / w.file).write_bytes(CONTENT)
    fetch_weights(dest=tmp_path, weights=[w], progress=lambda _: None)  # no network needed
    assert read_sums(tmp_path / SUMS_FILE) == {w.file: _sha(CONTENT)}


def test_offline_stops_with_every_url_and_path(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: connection refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = [
        _weight(f"http://127.0.0.1:{port}/a.pt", file="a.pt"),
        Weight("b", "b.bin", f"http://127.0.0.1:{port}/b.bin", "features.pretrained", 2, hf_lfs_sha256=True),
    ]
    with pytest.raises(OfflineError) as e:
        fetch_weights(dest=tmp_path, weights=ws, progress=lambda _: None, timeout_s=5)
    msg = str(e.value)
    assert "cannot reach the publisher" in msg
    for w in ws:
        assert w.url in msg and str(tmp_path / w.file) in msg and w.config_key in msg
    assert not any(tmp_path.iterdir())


def test_unknown_names_are_refused():
    with pytest.raises(WeightsError, match="known: "):
        fetch_weights(["sam_vit_q"], dest="unused")


@pytest.mark.parametrize("config", ["lerf_ovs.yaml", "3dovs.yaml"])
def test_the_benchmark_configs_name_the_fetched_files(config):
    doc = yaml.safe_load((REPO_ROOT / "configs" / config).read_text())
    for w in WEIGHTS:
        section, key = w.config_key.split(".")
        assert doc[section][key] == f"checkpoints/{w.file}", (config, w.config_key)
    assert doc["masks"]["sam_model_type"] == "vit_h"
    assert doc["tracks"]["sam2_config"] == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert (doc["features"]["model_name"], "laion2b_s34b_b88k") == ("ViT-B-16", "laion2b_s34b_b88k")


def test_the_urls_are_the_publishers():
    import open_clip

    tag = open_clip.get_pretrained_cfg("ViT-B-16", "laion2b_s34b_b88k")
    assert tag["hf_hub"].strip("/") == OPEN_CLIP_HF_REPO
    by_name = {w.name: w for w in WEIGHTS}
    assert by_name["sam_vit_h"].url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"
    assert by_name["sam_vit_h"].md5_prefix == "4b8939"
    assert by_name["sam2.1_hiera_l"].url.endswith("/segment_anything_2/092824/sam2.1_hiera_large.pt")
    assert Path(by_name["open_clip_vit_b_16"].url).name == "open_clip_pytorch_model.bin"


def test_a_missing_benchmark_checkpoint_names_make_checkpoints(tmp_path):
    from ccl.features import FeaturesConfig
    from ccl.features.backends.open_clip import weights_path
    from ccl.masks import MasksConfig
    from ccl.masks.backends.sam import check as check_sam
    from ccl.tracks import TracksConfig
    from ccl.tracks.backends.sam2 import check as check_sam2

    doc = yaml.safe_load((REPO_ROOT / "configs" / "lerf_ovs.yaml").read_text())
    where = {k: str(tmp_path / v) for k, v in (("masks", doc["masks"]["sam_checkpoint"]),
             ("tracks", doc["tracks"]["sam2_checkpoint"]), ("features", doc["features"]["pretrained"]))}  # fmt: skip
    calls = {
        "masks": lambda: check_sam(MasksConfig(backend="sam", sam_checkpoint=where["masks"])),
        "tracks": lambda: check_sam2(TracksConfig(backend="sam2", sam2_checkpoint=where["tracks"]), None),
        "features": lambda: weights_path(FeaturesConfig(backend="open_clip", pretrained=where["features"])),
    }
    for stage, call in calls.items():
        with pytest.raises(FileNotFoundError, match="`make checkpoints` fetches") as e:
            call()
        assert stage in str(e.value)  # the message names the stage's key
    with pytest.raises(FileNotFoundError) as e:  # a file of another name: no such promise
        check_sam2(TracksConfig(backend="sam2", sam2_checkpoint=str(tmp_path / "mine.pt")), None)
    assert "make checkpoints" not in str(e.value)
