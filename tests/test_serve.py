import asyncio
import io
import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Error as BrowserError
from serve_support import png, run_in_fresh_loop, serving_in_thread

from simpsons_classifier.cli import main
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.inference.export import FP32, export_onnx, file_sha256
from simpsons_classifier.inference.predictor import Predictor
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.serve.app import create_app
from simpsons_classifier.serve.batcher import MicroBatcher
from simpsons_classifier.serve.settings import ServeSettings

UPLOAD_LIMIT = 200_000
PIXEL_LIMIT = 512 * 512
SETTINGS = ServeSettings(max_upload_bytes=UPLOAD_LIMIT, max_batch=8, max_wait_ms=50, max_pixels=PIXEL_LIMIT)
API_KEY = "s3cret-key"
ORIGIN = "https://classifier.example"
PAGE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def client(serve_run, serve_predictor):
    with TestClient(create_app(serve_predictor, serve_run, SETTINGS)) as client:
        yield client


@pytest.fixture(scope="module")
def image(serve_run) -> tuple[str, bytes]:
    """A validation image's path and PNG bytes."""
    path = RunData.read(serve_run).split.val[0].path
    return path, open(path, "rb").read()


def _expected(predictor: Predictor, path: str):
    return predictor.predict_batch(predictor.load(path)[None])[0]


def test_predict_answers_top_k_and_unknown(client, serve_predictor, image):
    path, data = image
    response = client.post("/predict", files={"image": ("bart.png", data, "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"top_k", "unknown"}
    expected = _expected(serve_predictor, path)
    assert [entry["label"] for entry in body["top_k"]] == [label for label, _ in expected.top_k]
    assert body["top_k"][0]["probability"] == pytest.approx(expected.top_k[0][1], abs=1e-5)
    assert body["unknown"] == expected.unknown
    two = client.post("/predict?top_k=2", files={"image": ("bart.png", data, "application/octet-stream")})
    assert len(two.json()["top_k"]) == 2


def test_health_docs_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok", "classes": 4, "unknown_threshold": True,
                                             "detection": False}
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/gradcam", "/healthz"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert 'id="file"' in client.get("/").text


def _bomb() -> bytes:
    """A 1-bit PNG of 9000×9000 pixels: a few kilobytes that would decode to 81 million pixels."""
    return png(Image.new("1", (9000, 9000)))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name, data, content_type, status, message", [
    ("notes.png", b"this is not an image", "image/png", 422, "not a readable image"),
    ("truncated.png", None, "image/png", 422, "truncated"),
    ("huge.png", b"\x89PNG" + bytes(UPLOAD_LIMIT), "image/png", 413, "over the limit"),
    ("bomb.png", None, "image/png", 422, "decompression bomb"),
    ("notes.txt", b"hello", "text/plain", 415, "expected an image"),
    ("empty.png", b"", "image/png", 422, "empty"),
    ("wide.png", png(Image.new("RGB", (600, 500))), "image/png", 413, f"over the limit of {PIXEL_LIMIT} pixels"),
])
def test_bad_uploads_get_a_4xx_with_a_message_and_the_server_keepsserving_in_thread(client, image, name, data, content_type,
                                                                          status, message):
    if name == "truncated.png":
        data = image[1][: len(image[1]) // 2]
    if name == "bomb.png":
        data = _bomb()
        assert len(data) < UPLOAD_LIMIT
    response = client.post("/predict", files={"image": (name, data, content_type)})
    assert response.status_code == status and message in response.json()["detail"]
    assert " object at 0x" not in response.json()["detail"]  # no Python repr of the upload
    assert client.post("/predict", files={"image": ("ok.png", image[1], "image/png")}).status_code == 200


def _jpeg(size: tuple[int, int], progressive: bool) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (250, 200, 30)).save(buffer, format="JPEG", progressive=progressive)
    return buffer.getvalue()


def test_the_pixel_limit_counts_the_pixels_actually_decoded(client):
    """A baseline JPEG decodes at a reduced scale (2000² -> 250² for this 32-px model), a progressive one cannot
    spare its full-size coefficients, and other formats decode at full size."""
    assert 2000 * 2000 > PIXEL_LIMIT
    baseline = client.post("/predict", files={"image": ("photo.jpg", _jpeg((2000, 2000), False), "image/jpeg")})
    assert baseline.status_code == 200
    progressive = client.post("/predict", files={"image": ("photo.jpg", _jpeg((2000, 2000), True), "image/jpeg")})
    assert progressive.status_code == 413
    assert progressive.json()["detail"] == (f"photo.jpg is too large to decode: 2000x2000 = 4000000 pixels to decode "
                                            f"is over the limit of {PIXEL_LIMIT} pixels")


def test_requests_that_are_not_an_image_upload_are_refused(client, image):
    assert client.post("/predict", json={"image": "bart.png"}).status_code == 415
    assert client.post("/predict", data={"image": "bart.png"}).status_code == 415
    assert client.post("/predict", files={"picture": ("a.png", image[1], "image/png")}).status_code == 422
    far_too_big = client.post("/predict", files={"image": ("big.png", bytes(3 * UPLOAD_LIMIT), "image/png")})
    assert far_too_big.status_code == 413 and "Too Large" in far_too_big.text  # refused before it is parsed


def test_the_schema_documents_every_refusal_and_the_image_part(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/predict", "/gradcam"):
        operation = paths[path]["post"]
        assert {"400", "408", "413", "415", "422", "503"} <= set(operation["responses"])
        assert "401" not in operation["responses"]  # no key asked for by default
        assert "Retry-After" in operation["responses"]["503"]["headers"]
        encoding = operation["requestBody"]["content"]["multipart/form-data"]["encoding"]["image"]
        assert "image/*" in encoding["contentType"]
    assert "409" in paths["/gradcam"]["post"]["responses"]


def test_an_api_key_guards_every_route_but_the_health_check(serve_run, serve_predictor, image):
    upload = {"image": ("a.png", image[1], "image/png")}
    with TestClient(create_app(serve_predictor, serve_run, replace(SETTINGS, api_key=API_KEY))) as client:
        assert client.get("/healthz").status_code == 200
        for refused in (client.get("/"), client.get("/docs"), client.get("/openapi.json"), client.get("/nowhere"),
                        client.post("/predict", files=upload),
                        client.post("/predict", files=upload, headers={"X-API-Key": "guess"}),
                        client.post("/gradcam", files=upload, auth=("bart", "guess"))):
            assert refused.status_code == 401 and "API key" in refused.json()["detail"]
            assert refused.headers["WWW-Authenticate"].startswith("Basic")  # a browser asks for it
        assert client.post("/predict", files=upload, headers={"X-API-Key": API_KEY}).status_code == 200
        assert client.get("/", auth=("anyone", API_KEY)).status_code == 200  # the web page, via the browser
        schema = client.get("/openapi.json", headers={"X-API-Key": API_KEY}).json()
    assert "401" in schema["paths"]["/predict"]["post"]["responses"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_cross_origin_calls_are_refused_unless_the_origin_is_listed(client, serve_run, serve_predictor):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": ORIGIN}).headers
    with TestClient(create_app(serve_predictor, serve_run, replace(SETTINGS, cors_origins=(ORIGIN,)))) as listed:
        allowed = listed.options("/predict", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
        other = listed.options("/predict", headers=preflight | {"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
        assert listed.get("/healthz", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN


def test_a_full_server_answers_503_with_retry_after_and_keeps_its_health_check(serve_run, serve_predictor, image, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = serve_predictor.predict_batch

    def held(images, top_k):
        entered.set()
        release.wait(timeout=30)
        return real(images, top_k)

    async def scenario():
        app = create_app(serve_predictor, serve_run, replace(SETTINGS, max_requests=2, max_wait_ms=200))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                def post():
                    return http.post("/predict", files={"image": ("a.png", image[1], "image/png")})

                in_progress = [asyncio.create_task(post()) for _ in range(2)]
                while not entered.is_set():
                    await asyncio.sleep(0.01)
                refused, health = await post(), await http.get("/healthz")
                release.set()
                return await asyncio.gather(*in_progress), refused, health

    monkeypatch.setattr(serve_predictor, "predict_batch", held)
    answered, refused, health = run_in_fresh_loop(scenario())
    assert [response.status_code for response in answered] == [200, 200]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "busy" in refused.json()["detail"]
    assert health.status_code == 200


def test_a_request_not_answered_in_time_gets_503_and_the_service_goes_on(serve_run, serve_predictor, image, monkeypatch):
    real = serve_predictor.predict_batch
    calls = []

    def first_one_slow(images, top_k):
        calls.append(len(images))
        if len(calls) == 1:
            time.sleep(1.0)
        return real(images, top_k)

    monkeypatch.setattr(serve_predictor, "predict_batch", first_one_slow)
    upload = {"image": ("a.png", image[1], "image/png")}
    with TestClient(create_app(serve_predictor, serve_run, replace(SETTINGS, request_timeout_s=0.3, max_wait_ms=1))) as client:
        late = client.post("/predict", files=upload)
        assert late.status_code == 503 and late.headers["Retry-After"] == "1"
        assert late.json()["detail"].startswith("no answer within 0.3 s")
        time.sleep(1.0)  # the abandoned batch finishes
        assert client.post("/predict", files=upload).status_code == 200


@pytest.fixture(scope="module")
def exported(serve_run, tmp_path_factory):
    """A copy of the run with its ONNX export."""
    copy = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(serve_run, copy)
    export_onnx(copy)
    return copy


def _forged(exported, tmp_path, forge) -> Path:
    run = tmp_path / "forged"
    shutil.copytree(exported, run)
    metadata_file = RunDir(run).export_dir / FP32.metadata_file
    metadata = json.loads(metadata_file.read_text())
    forge(run, metadata)
    metadata_file.write_text(json.dumps(metadata))
    return run


def _renamed_class(run, metadata):
    metadata["classes"][0] = "somebody_else"


def _onnx_only(run, metadata):
    """The checkpoint replaced by a file the export's hash vouches for, as in a run shipped with its export only."""
    RunDir(run).best.write_bytes(b"not a checkpoint")
    metadata["checkpoint_sha256"] = file_sha256(RunDir(run).best)


@pytest.mark.parametrize("forge, reason", [
    (_renamed_class, "other classes than the model being served"),
    (_onnx_only, "cannot be loaded"),
])
def test_gradcam_without_a_matching_checkpoint_answers_409_and_predictions_go_on(exported, tmp_path, image, forge,
                                                                                reason):
    run = _forged(exported, tmp_path, forge)
    upload = {"image": ("a.png", image[1], "image/png")}
    predictor = Predictor.from_run(run, "onnx")
    with TestClient(create_app(predictor, run, SETTINGS)) as client:
        for query in ("", f"?label={predictor.classes[0]}"):
            response = client.post("/gradcam" + query, files=upload)
            assert response.status_code == 409
            assert response.json()["detail"].startswith("Grad-CAM is unavailable") and reason in response.text
        assert client.post("/predict", files=upload).status_code == 200


def test_an_export_whose_outputs_do_not_match_its_class_names_is_refused_at_start(exported, tmp_path):
    run = _forged(exported, tmp_path, lambda run, metadata: metadata["classes"].append("zz_extra"))
    with pytest.raises(ValueError, match="the model has 4 outputs but 5 class names"):
        create_app(Predictor.from_run(run, "onnx"), run, SETTINGS)


@pytest.mark.parametrize("options, environment, message", [
    (["--max-decodes", "0", "--upload-timeout", "-1"], {},
     "serve settings: max_decodes must be at least 1; upload_timeout_s must be positive"),
    (["--max-megapixels", "0"], {}, "--max-upload-mb and --max-megapixels must be positive"),
    ([], {"SIMPSONS_API_KEY": " "}, "the API key (--api-key or SIMPSONS_API_KEY) is empty"),
])
def test_serve_refuses_wrong_limits_with_one_error_line(serve_run, monkeypatch, capsys, options, environment, message):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--run", str(serve_run), *options]) == 2
    assert message in capsys.readouterr().err


def test_gradcam_returns_an_overlay_of_the_model_input(client, image, serve_predictor):
    response = client.post("/gradcam", files={"image": ("bart.png", image[1], "image/png")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.size == (32, 32) and overlay.mode == "RGB"
    labelled = client.post(f"/gradcam?label={serve_predictor.classes[1]}", files={"image": ("b.png", image[1], "image/png")})
    assert labelled.status_code == 200
    assert client.post("/gradcam?label=nobody", files={"image": ("b.png", image[1], "image/png")}).status_code == 422


def test_concurrent_requests_share_a_forward_pass(serve_run, serve_predictor, image, monkeypatch):
    sizes = []
    real = serve_predictor.predict_batch

    def recording(images, top_k):
        sizes.append(len(images))
        return real(images, top_k)

    async def burst() -> list[httpx.Response]:
        app = create_app(serve_predictor, serve_run, SETTINGS)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await asyncio.gather(*(
                    http.post("/predict", files={"image": ("a.png", image[1], "image/png")}) for _ in range(6)))

    monkeypatch.setattr(serve_predictor, "predict_batch", recording)
    responses = run_in_fresh_loop(burst())
    assert [r.status_code for r in responses] == [200] * 6
    assert len({r.json()["top_k"][0]["label"] for r in responses}) == 1
    assert sum(sizes) == 6 and max(sizes) > 1


def test_the_batcher_keeps_order_caps_the_batch_survives_a_failing_batch_and_skips_abandoned_items():
    sizes, seen = [], []

    def double(items):
        sizes.append(len(items))
        seen.extend(items)
        if -1 in items:
            raise ValueError("bad item")
        return [2 * item for item in items]

    async def scenario():
        batcher = MicroBatcher(double, max_batch=4, max_wait_s=0.02)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        failed = await asyncio.gather(batcher.submit(-1), return_exceptions=True)
        abandoned = asyncio.create_task(batcher.submit(100))
        await asyncio.sleep(0)  # queued, waiting for company
        abandoned.cancel()  # its request timed out or its client left
        after = await batcher.submit(21)
        await batcher.stop()
        return results, failed, after

    results, failed, after = run_in_fresh_loop(scenario())
    assert results == [2 * i for i in range(10)] and max(sizes[:3]) == 4 and sum(sizes[:3]) == 10
    assert isinstance(failed[0], ValueError) and after == 42
    assert 100 not in seen


@pytest.fixture(scope="module")
def server(serve_run, serve_predictor):
    yield from serving_in_thread(create_app(serve_predictor, serve_run, SETTINGS), SETTINGS)


@pytest.fixture(scope="module")
def keyed_server(serve_run, serve_predictor):
    settings = replace(SETTINGS, api_key=API_KEY)
    yield from serving_in_thread(create_app(serve_predictor, serve_run, settings), settings)


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


def test_the_web_page_shows_the_predicted_character(server, browser, serve_predictor, image):
    path, _ = image
    expected = _expected(serve_predictor, path)
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


def test_the_web_page_works_behind_an_api_key_once_the_browser_has_it(keyed_server, browser, image):
    """The browser asks for the key (HTTP Basic, the key as password) and sends it with the page's own calls."""
    anonymous = browser.new_page()
    try:
        with pytest.raises(BrowserError, match="ERR_INVALID_AUTH_CREDENTIALS"):  # asked, and given nothing
            anonymous.goto(keyed_server + "/")
    finally:
        anonymous.close()
    context = browser.new_context(http_credentials={"username": "user", "password": API_KEY})
    try:
        page = context.new_page()
        page.goto(keyed_server + "/")
        page.set_input_files("#file", image[0])
        page.wait_for_function("document.querySelector('#label').textContent.length > 0", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#cam').naturalWidth > 0", timeout=PAGE_TIMEOUT_MS)
    finally:
        context.close()
