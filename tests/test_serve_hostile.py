"""``simpsons serve`` under hostile or heavy use, in a process of its own on 127.0.0.1: huge images leave its memory
within the stated bound, slow clients are cut off, a fuzz of the API finds no server error and no undocumented
answer, a 64-client load test finds no error and no memory growth, and a shutdown lets requests in progress finish.
"""

import asyncio
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serve_support import LOOPBACK, ServerProcess, png, run_in_fresh_loop

from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.serve.settings import MEGABYTE, ServeSettings

DEFAULTS = ServeSettings()
DECODE_BYTES_PER_PIXEL = 24
"""The most memory one decode takes per pixel, whatever the format and mode (measured in the server: 19 for a float
TIFF, 17 for an RGBA WebP, 10 for an RGB PNG)."""
LOSSLESS = {"TIFF": {"compression": "tiff_deflate"}, "WEBP": {"lossless": True}}
"""Encoder options that keep a large solid image a small file."""
SLACK_MB = 64
"""Room for what is not decoding: request buffers, the batch, the allocator's rounding."""
HEADER_TIMEOUT_S = 1
UPLOAD_TIMEOUT_S = 2
PARALLEL_UPLOADS = 8
LOAD_CLIENTS = 64
LOAD_REQUESTS = 8
"""Per client and round: 64 x 8 = 512 requests a round, three rounds."""
LOAD_ROUNDS = 3
GROWTH_BOUND_MB = 32
"""The most the server's resident memory may grow from the end of the first load round to the end of the last."""
FUZZ_EXAMPLES = 100
"""Per kind of request generated: bounds the fuzz to a few hundred requests, the same ones on every run."""
UPLOAD_PATHS = ("/predict", "/gradcam")
LOAD_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "serve_load.py"


@pytest.fixture(scope="module")
def server(serve_run):
    """The service with its default limits."""
    server = ServerProcess(serve_run)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient_server(serve_run):
    """The service with timeouts short enough for the slow-client tests to end quickly."""
    server = ServerProcess(serve_run, "--header-timeout", str(HEADER_TIMEOUT_S), "--upload-timeout", str(UPLOAD_TIMEOUT_S))
    yield server
    server.stop()


def _post_at_once(url: str, files: list[tuple[str, bytes, str]]) -> list[httpx.Response]:
    async def send_all():
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            return await asyncio.gather(*(http.post("/predict", files={"image": file}) for file in files))

    return run_in_fresh_loop(send_all())


def _memory_under(server: ServerProcess, files: list[tuple[str, bytes, str]]) -> tuple[list[httpx.Response], float,
                                                                                     float]:
    """The answers to ``files`` sent all at once, and how far above its level before the server's resident memory
    rose at the peak, and stayed after."""
    server.reset_peak()
    before = server.memory_mb("VmRSS")
    responses = _post_at_once(server.url, files)
    return responses, server.memory_mb("VmHWM") - before, server.memory_mb("VmRSS") - before


def _encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **LOSSLESS.get(image_format, {}))
    return buffer.getvalue()


def test_eight_8000px_pngs_at_once_are_refused_from_their_header(server):
    """The case that raised the server from 1.7 to 5.4 GB: solid 8000x8000 PNGs of ~200 KB, decoded at full size."""
    data = png(Image.new("RGB", (8000, 8000), (255, 217, 15)))
    assert len(data) < DEFAULTS.max_upload_bytes
    responses, peak_mb, after_mb = _memory_under(server, [("huge.png", data, "image/png")] * PARALLEL_UPLOADS)
    for response in responses:
        assert response.status_code == 413
        assert response.json()["detail"] == ("huge.png is too large to decode: 8000x8000 = 64000000 pixels to decode "
                                             f"is over the limit of {DEFAULTS.max_pixels} pixels")
    assert peak_mb < SLACK_MB and after_mb < SLACK_MB


@pytest.mark.parametrize("mode, image_format", [("RGBA", "PNG"), ("F", "TIFF"), ("RGBA", "WEBP")])
def test_decodes_at_the_pixel_limit_stay_within_the_memory_bound(server, mode, image_format):
    """Eight images of exactly the default limit at once, in the formats costliest to decode: at most
    ``max_decodes`` decode together, each within ``DECODE_BYTES_PER_PIXEL`` bytes a pixel, and their memory goes
    back to the system after."""
    side = int(DEFAULTS.max_pixels ** 0.5)
    data = _encoded(Image.new(mode, (side, side)), image_format)
    files = [(f"large.{image_format.lower()}", data, f"image/{image_format.lower()}")] * PARALLEL_UPLOADS
    responses, peak_mb, after_mb = _memory_under(server, files)
    assert [response.status_code for response in responses] == [200] * PARALLEL_UPLOADS
    assert peak_mb < DEFAULTS.max_decodes * DECODE_BYTES_PER_PIXEL * DEFAULTS.max_pixels / MEGABYTE + SLACK_MB
    assert after_mb < SLACK_MB


def test_a_connection_whose_headers_never_finish_is_closed(impatient_server):
    with socket.create_connection((LOOPBACK, impatient_server.port)) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\n")
        connection.settimeout(30)
        assert connection.recv(1024) == b""  # closed by the server, with nothing to say


def test_headers_trickling_in_byte_by_byte_are_cut_off_at_the_deadline(impatient_server):
    """Each byte would restart a keep-alive timer; the header deadline counts from the first."""
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"z" * 200 + b"\r\n\r\n"
    with socket.create_connection((LOOPBACK, impatient_server.port)) as connection:
        with pytest.raises(OSError):  # sending into the connection the server closed: a broken pipe or a reset
            for byte in request:
                connection.sendall(bytes([byte]))
                time.sleep(0.05)


def test_a_body_that_stops_arriving_gets_408(impatient_server):
    head = (b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
            b"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG")
    with socket.create_connection((LOOPBACK, impatient_server.port)) as connection:
        connection.sendall(head)
        connection.settimeout(30)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["detail"] == f"the request body did not arrive within {UPLOAD_TIMEOUT_S} s"


@pytest.mark.parametrize("requests", ["valid", "invalid", "with an image"])
def test_fuzzing_the_api_finds_no_server_error_and_no_undocumented_answer(server, requests):
    """Requests generated from the service's own OpenAPI schema: valid ones (whose uploads are random bytes), invalid
    ones, and ones with a real image and generated parameters, which reach the model."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    if requests == "with an image":
        image = png(Image.new("RGB", (40, 30), (255, 217, 15)))
        strategy = st.one_of(*(schema[path]["POST"].as_strategy(body={"image": image}) for path in UPLOAD_PATHS))
    else:
        strategy = schema.as_strategy(GenerationMode.POSITIVE if requests == "valid" else GenerationMode.NEGATIVE)

    @given(case=strategy)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def call(case):
        case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                       response_headers_conformance, response_schema_conformance])

    call()


@pytest.mark.slow
def test_64_clients_get_no_error_and_the_server_does_not_grow(server, serve_run, tmp_path):
    images = [str(sample.path) for sample in RunData.read(serve_run).split.val]
    report = tmp_path / "load.json"
    command = [sys.executable, str(LOAD_SCRIPT), "--url", server.url, "--images", *images, "--clients",
               str(LOAD_CLIENTS), "--requests", str(LOAD_REQUESTS), "--rounds", str(LOAD_ROUNDS), "--server-pid",
               str(server.process.pid), "--json", str(report)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    result = json.loads(report.read_text())
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert [one["errors"] for one in result["rounds"]] == [0] * LOAD_ROUNDS
    assert sum(one["requests_sent"] for one in result["rounds"]) == LOAD_CLIENTS * LOAD_REQUESTS * LOAD_ROUNDS
    assert result["server_rss_growth_mb"] < GROWTH_BOUND_MB


@pytest.mark.slow
def test_shutdown_lets_a_request_in_progress_finish(serve_run):
    image = Path(RunData.read(serve_run).split.val[0].path).read_bytes()
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png"
            b"\r\n\r\n" + image + b"\r\n--b--\r\n")
    server = ServerProcess(serve_run)
    with socket.create_connection((LOOPBACK, server.port)) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
                           b"boundary=b\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:100])
        time.sleep(0.5)  # the server has the request in progress
        server.process.terminate()
        time.sleep(1.0)  # it has stopped listening, and waits for this request
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz", timeout=5)
        connection.sendall(body[100:])
        connection.settimeout(60)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    _, output = server.stop()
    status, _, payload = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200") and "top_k" in json.loads(payload)
    assert "Application shutdown complete" in output
