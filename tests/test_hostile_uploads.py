"""The running demo against hostile uploads and requests: each gets a message or a sensible answer, the server keeps
serving, no file outside its own is served or opened, and it listens on 127.0.0.1 only, with no share link."""

import http.client
import io
import json

import httpx
import numpy as np
import psutil
import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import ROOT
from PIL import Image, PngImagePlugin

from bench.fuzz_inputs import black_png, png_claiming

pytestmark = pytest.mark.slow  # every test talks to the demo server

SVG = b"""<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">
<script>fetch("/gradio_api/file=/etc/passwd").then(r => r.text()).then(alert)</script>
<circle cx="32" cy="32" r="30" fill="red"/></svg>"""
NOISE = np.random.default_rng(0).bytes(64 * 1024)
# name: (the file's content, drawn when the test runs; what the message says)
HOSTILE = {
    "empty.jpg": (lambda: b"", "not an image"),
    "text.jpg": (lambda: b"not an image at all", "not an image"),
    "noise.jpg": (lambda: NOISE, "not an image"),
    "noise.png": (lambda: NOISE, "not an image"),
    "broken_header.png": (lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image"),
    "bomb_30000x30000.png": (lambda: png_claiming(30_000, 30_000), "too large to open safely"),  # 2.7 GB as RGB
    "black_20000x20000.png": (lambda: black_png(20_000, 20_000), "too large to open safely"),  # a whole image, 50 KB
    "text_chunk_bomb.png": (lambda: _png_with_text(8 * 2**20), "not an image"),  # 20 KB, a comment of 8 MB
}
# Whatever a file route is asked for, these must never come back: /etc/passwd and this repository's conftest.
SECRETS = (b"root:", b"Shared fixtures")


def _png_with_text(length: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * length, zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _top5(client: Client, path) -> dict[str, float]:
    result = client.predict(handle_file(str(path)), api_name="/predict")
    return {entry["label"]: entry["confidence"] for entry in result["confidences"]}


def _still_serving(client: Client, photo) -> None:
    assert len(_top5(client, photo)) == 5


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_upload_gets_a_message_and_the_server_keeps_serving(client, photo, tmp_path, name):
    content, message = HOSTILE[name]
    upload = tmp_path / name
    upload.write_bytes(content())
    with pytest.raises(AppError, match=message) as refused:
        client.predict(handle_file(str(upload)), api_name="/predict")
    assert "/" not in str(refused.value)  # no server path in the message
    _still_serving(client, photo)


def test_an_svg_with_a_script_is_refused_and_never_served_back_inline(demo_server, client, photo, tmp_path):
    svg = tmp_path / "flower.svg"
    svg.write_bytes(SVG)
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(svg)), api_name="/predict")
    # The stored upload, as a browser would fetch it: raw bytes to download, not an SVG document that runs scripts.
    with svg.open("rb") as file:
        (stored,) = httpx.post(f"{demo_server.url}gradio_api/upload", files={"files": file}).json()
    served = httpx.get(f"{demo_server.url}gradio_api/file={stored}")
    assert served.status_code == 200 and served.content == SVG
    assert served.headers["content-type"] == "application/octet-stream"
    assert served.headers["content-disposition"].startswith("attachment")
    _still_serving(client, photo)


def test_an_upload_over_50_mb_is_turned_away_by_the_server(demo_server, client, photo, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (51 * 2**20))
    # Straight to the upload route: gradio_client checks the size itself and would not send it.
    with big.open("rb") as file:
        refused = httpx.post(f"{demo_server.url}gradio_api/upload", files={"files": file}, timeout=60)
    assert refused.status_code == 413 and "maximum allowed size" in refused.text
    _still_serving(client, photo)


def test_png_bytes_named_jpg_are_classified_as_the_png(client, photo, tmp_path):
    png = tmp_path / "flower.png"
    Image.open(photo).save(png)
    misnamed = tmp_path / "flower_really_a_png.jpg"
    misnamed.write_bytes(png.read_bytes())
    assert _top5(client, misnamed) == pytest.approx(_top5(client, png), abs=1e-6)


@pytest.mark.parametrize("exif", ["60 KB description", "60 KB of noise"])
def test_a_jpeg_with_a_huge_or_broken_exif_block_is_classified_like_without(client, photo, tmp_path, exif):
    if exif == "60 KB description":
        block = Image.Exif()
        block[0x010E] = "x" * 60_000  # ImageDescription
        block[0x0112] = 1  # upright
        block = block.tobytes()
    else:
        block = b"Exif\0\0" + np.random.default_rng(1).bytes(60_000)
    image = Image.open(photo)
    plain, tagged = tmp_path / "plain.jpg", tmp_path / "tagged.jpg"
    image.save(plain, quality=95)
    image.save(tagged, quality=95, exif=block)
    assert tagged.stat().st_size > plain.stat().st_size + 60_000
    assert _top5(client, tagged) == pytest.approx(_top5(client, plain), abs=1e-6)


@pytest.mark.parametrize(
    "path",
    [
        "/gradio_api/file=/etc/passwd",
        "/file=/etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        f"/gradio_api/file={ROOT}/tests/conftest.py",
        "/gradio_api/file=tests/conftest.py",  # relative to the server's working directory, the repository
        f"/gradio_api/file={get_upload_folder()}/../../../etc/passwd",  # through Gradio's upload folder
        "/gradio_api/file=demo/examples/../../tests/conftest.py",
        "/gradio_api/file=..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/../../../../../../etc/passwd",
        "/assets/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_files_outside_the_app_are_not_served(demo_server, path):
    # http.client sends the path as written: an HTTP library would resolve the ".." before sending.
    connection = http.client.HTTPConnection("127.0.0.1", demo_server.port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert 400 <= response.status < 500
    assert not any(secret in body for secret in SECRETS)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"path": "PHOTO", "meta": {"_type": "gradio.FileData"}}, None),  # Gradio: "not uploaded by a user"
        ({"path": "PHOTO"}, "Only photos uploaded"),  # without "meta", Gradio 6.31 leaves the check to the app
        ("PHOTO", None),  # Gradio's ImageData refuses anything but a dict
        ({"path": 7}, None),
        ({"path": None, "url": "data:image/png;base64,abc"}, "not an image that can be read"),  # bad padding
    ],
    ids=["file_data", "bare_path", "string", "number", "bad_base64"],
)
def test_a_crafted_api_call_gets_an_error_and_opens_no_file_outside_the_uploads(
    demo_server, client, photo, value, message
):
    # PHOTO exists on the server but was never uploaded: naming its path must not get it classified.
    value = json.loads(json.dumps(value).replace("PHOTO", str(photo)))
    call = f"{demo_server.url}gradio_api/call/predict"
    event_id = httpx.post(call, json={"data": [value]}).json()["event_id"]
    event, data = httpx.get(f"{call}/{event_id}", timeout=60).text.strip().split("\n")
    assert event == "event: error"
    error = json.loads(data.removeprefix("data: "))["error"]
    assert error is None if message is None else message in error  # None: Gradio tells no details
    _still_serving(client, photo)


def test_it_listens_on_loopback_only_and_opens_no_share_link(demo_server):
    sockets = psutil.Process(demo_server.process.pid).net_connections(kind="inet")
    listening = {(sock.laddr.ip, sock.laddr.port) for sock in sockets if sock.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", demo_server.port)}
    log = demo_server.log.read_text()
    assert f"http://127.0.0.1:{demo_server.port}" in log
    assert "public URL" not in log and "gradio.live" not in log
