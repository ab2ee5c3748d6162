import asyncio
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from tiny_runs import train_tiny_run

from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.inference.predictor import Predictor
from simpsons_classifier.serve.app import create_app
from simpsons_classifier.serve.batcher import MicroBatcher
from simpsons_classifier.serve.settings import ServeSettings

UPLOAD_LIMIT = 200_000
SETTINGS = ServeSettings(max_upload_bytes=UPLOAD_LIMIT, max_batch=8, max_wait_ms=50)
SERVER_START_TIMEOUT_S = 20
PAGE_TIMEOUT_MS = 30_000


def run_in_fresh_loop(coroutine):
    """asyncio.run on a thread of its own: the session-wide Playwright browser keeps a loop in the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.from_run(run)


@pytest.fixture(scope="module")
def client(run, predictor):
    with TestClient(create_app(predictor, run, SETTINGS)) as client:
        yield client


@pytest.fixture(scope="module")
def image(run) -> tuple[str, bytes]:
    """A validation image's path and PNG bytes."""
    path = RunData.read(run).split.val[0].path
    return path, open(path, "rb").read()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _expected(predictor: Predictor, path: str):
    return predictor.predict_batch(predictor.load(path)[None])[0]


def test_predict_answers_top_k_and_unknown(client, predictor, image):
    path, data = image
    response = client.post("/predict", files={"image": ("bart.png", data, "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"top_k", "unknown"}
    expected = _expected(predictor, path)
    assert [entry["label"] for entry in body["top_k"]] == [label for label, _ in expected.top_k]
    assert body["top_k"][0]["probability"] == pytest.approx(expected.top_k[0][1], abs=1e-5)
    assert body["unknown"] == expected.unknown
    two = client.post("/predict?top_k=2", files={"image": ("bart.png", data, "application/octet-stream")})
    assert len(two.json()["top_k"]) == 2


def test_health_docs_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok", "classes": 4, "unknown_threshold": True}
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/gradcam", "/healthz"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert 'id="file"' in client.get("/").text


def _bomb() -> bytes:
    """A 1-bit PNG of 9000×9000 pixels: a few kilobytes that would decode to 81 million pixels."""
    return _png(Image.new("1", (9000, 9000)))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name, data, content_type, status, message", [
    ("notes.png", b"this is not an image", "image/png", 422, "not a readable image"),
    ("truncated.png", None, "image/png", 422, "truncated"),
    ("huge.png", b"\x89PNG" + bytes(UPLOAD_LIMIT), "image/png", 413, "over the limit"),
    ("bomb.png", None, "image/png", 422, "decompression bomb"),
    ("notes.txt", b"hello", "text/plain", 415, "expected an image"),
    ("empty.png", b"", "image/png", 422, "empty"),
])
def test_bad_uploads_get_a_4xx_with_a_message_and_the_server_keeps_serving(client, image, name, data, content_type,
                                                                          status, message):
    if name == "truncated.png":
        data = image[1][: len(image[1]) // 2]
    if name == "bomb.png":
        data = _bomb()
        assert len(data) < UPLOAD_LIMIT
    response = client.post("/predict", files={"image": (name, data, content_type)})
    assert response.status_code == status and message in response.json()["detail"]
    assert client.post("/predict", files={"image": ("ok.png", image[1], "image/png")}).status_code == 200


def test_requests_that_are_not_an_image_upload_are_refused(client, image):
    assert client.post("/predict", json={"image": "bart.png"}).status_code == 415
    assert client.post("/predict", data={"image": "bart.png"}).status_code == 415
    assert client.post("/predict", files={"picture": ("a.png", image[1], "image/png")}).status_code == 422
    far_too_big = client.post("/predict", files={"image": ("big.png", bytes(3 * UPLOAD_LIMIT), "image/png")})
    assert far_too_big.status_code == 413 and "Too Large" in far_too_big.text  # refused before it is parsed


def test_gradcam_returns_an_overlay_of_the_model_input(client, image, predictor):
    response = client.post("/gradcam", files={"image": ("bart.png", image[1], "image/png")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.size == (32, 32) and overlay.mode == "RGB"
    labelled = client.post(f"/gradcam?label={predictor.classes[1]}", files={"image": ("b.png", image[1], "image/png")})
    assert labelled.status_code == 200
    assert client.post("/gradcam?label=nobody", files={"image": ("b.png", image[1], "image/png")}).status_code == 422


def test_concurrent_requests_share_a_forward_pass(run, predictor, image, monkeypatch):
    sizes = []
    real = predictor.predict_batch

    def recording(images, top_k):
        sizes.append(len(images))
        return real(images, top_k)

    async def burst() -> list[httpx.Response]:
        app = create_app(predictor, run, SETTINGS)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await asyncio.gather(*(
                    http.post("/predict", files={"image": ("a.png", image[1], "image/png")}) for _ in range(6)))

    monkeypatch.setattr(predictor, "predict_batch", recording)
    responses = run_in_fresh_loop(burst())
    assert [r.status_code for r in responses] == [200] * 6
    assert len({r.json()["top_k"][0]["label"] for r in responses}) == 1
    assert sum(sizes) == 6 and max(sizes) > 1


def test_the_batcher_keeps_order_caps_the_batch_and_survives_a_failing_batch():
    sizes = []

    def double(items):
        sizes.append(len(items))
        if -1 in items:
            raise ValueError("bad item")
        return [2 * item for item in items]

    async def scenario():
        batcher = MicroBatcher(double, max_batch=4, max_wait_s=0.02)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        failed = await asyncio.gather(batcher.submit(-1), return_exceptions=True)
        after = await batcher.submit(21)
        await batcher.stop()
        return results, failed, after

    results, failed, after = run_in_fresh_loop(scenario())
    assert results == [2 * i for i in range(10)] and max(sizes[:3]) == 4 and sum(sizes[:3]) == 10
    assert isinstance(failed[0], ValueError) and after == 42


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(run, predictor):
    """The app under uvicorn on 127.0.0.1 in a background thread."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, run, SETTINGS), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


@pytest.mark.parametrize("path, rendered", [
    ("/docs", ".swagger-ui .opblock-summary-path[data-path='/predict']"),
    ("/redoc", "[data-section-id*='predict']"),
])
def test_the_api_docs_render_without_the_internet(server, browser, path, rendered):
    """The browser here cannot reach a CDN, so the pages render only if their scripts come from the service."""
    page = browser.new_page()
    try:
        page.goto(server + path)
        page.locator(rendered).first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    finally:
        page.close()


def test_the_web_page_shows_the_predicted_character(server, browser, predictor, image):
    path, _ = image
    expected = _expected(predictor, path)
    page = browser.new_page()
    try:
        page.goto(server + "/")
        page.set_input_files("#file", path)
        label = page.locator("#label")
        label.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#label').textContent.length > 0", timeout=PAGE_TIMEOUT_MS)
        shown = label.text_content()
        assert (expected.top_k[0][0] in shown) and (("unknown" in shown) == expected.unknown)
        assert page.locator("#bars .row").count() == len(expected.top_k)
        page.wait_for_function("document.querySelector('#cam').naturalWidth > 0", timeout=PAGE_TIMEOUT_MS)
        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
        page.wait_for_function("document.querySelector('#error').textContent.includes('not a readable image')",
                               timeout=PAGE_TIMEOUT_MS)
    finally:
        page.close()
