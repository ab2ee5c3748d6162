"""``POST /detect`` and the web page's "Find characters", with a stand-in detector: the service's part (uploads,
limits, the answer's shape, the drawing) is tested here, the detector's own in the detection tests."""

import asyncio
import io
import shutil
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_support import png, run_in_fresh_loop, serving_in_thread

from simpsons_classifier.cli import main
from simpsons_classifier.detection.predictor import Detection, DetectionPredictor
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.serve import server
from simpsons_classifier.serve.app import create_app
from simpsons_classifier.serve.settings import ServeSettings

UPLOAD_LIMIT = 200_000
PIXEL_LIMIT = 512 * 512
SETTINGS = ServeSettings(max_upload_bytes=UPLOAD_LIMIT, max_pixels=PIXEL_LIMIT)
PAGE_TIMEOUT_MS = 30_000
SCREEN_TOLERANCE_PX = 1.5


class FixedDetector:
    """Finds the same two characters in every image, at fixed fractions of its size, so that the boxes in pixels
    show which size the image reached the detector at."""

    classes = ["bart_simpson", "homer_simpson"]
    found = [("bart_simpson", 0.9, (0.1, 0.2, 0.5, 0.9)), ("homer_simpson", 0.4, (0.55, 0.1, 0.95, 0.6))]

    def __init__(self) -> None:
        self.min_scores: list[float] = []

    def detect(self, images, min_score=0.3):
        self.min_scores.append(min_score)
        return [[Detection(label, score, (x1 * image.width, y1 * image.height, x2 * image.width, y2 * image.height))
                 for label, score, (x1, y1, x2, y2) in self.found if score >= min_score] for image in images]


@pytest.fixture
def detector():
    return FixedDetector()


@pytest.fixture
def client(serve_run, serve_predictor, detector):
    with TestClient(create_app(serve_predictor, serve_run, SETTINGS, detector)) as client:
        yield client


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (250, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _expected_corners(width: int, height: int) -> list[float]:
    return [corner for _, _, (x1, y1, x2, y2) in FixedDetector.found
            for corner in (x1 * width, y1 * height, x2 * width, y2 * height)]


def _corners(answer: dict) -> list[float]:
    return [corner for found in answer["detections"] for corner in found["box"]]


def test_detect_answers_labels_scores_and_boxes_in_the_image_pixels(client, detector):
    response = client.post("/detect", files={"image": ("family.png", png(Image.new("RGB", (160, 96))), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert (body["width"], body["height"]) == (160, 96)
    assert [(found["label"], found["score"]) for found in body["detections"]] == [("bart_simpson", 0.9),
                                                                                    ("homer_simpson", 0.4)]
    assert _corners(body) == pytest.approx(_expected_corners(160, 96))
    assert detector.min_scores == [0.3]  # no min_score: the detector's own default


def test_a_jpeg_reaches_the_detector_at_its_own_size_not_the_classifiers_reduced_one(client):
    """The classifier decodes a baseline JPEG at a reduced scale (64 px here); boxes must be in the file's pixels."""
    response = client.post("/detect", files={"image": ("family.jpg", _jpeg((600, 400)), "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    assert (body["width"], body["height"]) == (600, 400)
    assert _corners(body) == pytest.approx(_expected_corners(600, 400))


def test_min_score_is_passed_to_the_detector(client, detector):
    upload = {"image": ("family.png", png(Image.new("RGB", (50, 40))), "image/png")}
    body = client.post("/detect?min_score=0.5", files=upload).json()
    assert [found["label"] for found in body["detections"]] == ["bart_simpson"]
    assert client.post("/detect?min_score=0.95", files=upload).json()["detections"] == []
    assert detector.min_scores == [0.5, 0.95]


@pytest.mark.parametrize("query, name, data, content_type, status, message", [
    ("", "notes.png", b"this is not an image", "image/png", 422, "not a readable image"),
    ("", "notes.txt", b"hello", "text/plain", 415, "expected an image"),
    ("", "empty.png", b"", "image/png", 422, "empty"),
    ("", "huge.png", b"\x89PNG" + bytes(UPLOAD_LIMIT), "image/png", 413, "over the limit"),
    ("", "wide.png", png(Image.new("RGB", (600, 500))), "image/png", 413, f"over the limit of {PIXEL_LIMIT} pixels"),
    ("?min_score=1.5", "ok.png", png(Image.new("RGB", (8, 8))), "image/png", 422, "less than or equal to 1"),
    ("?min_score=-0.1", "ok.png", png(Image.new("RGB", (8, 8))), "image/png", 422, "greater than or equal to 0"),
    ("?min_score=most", "ok.png", png(Image.new("RGB", (8, 8))), "image/png", 422, "valid number"),
])
def test_bad_input_gets_the_same_4xx_as_predict_and_never_reaches_the_detector(client, detector, query, name, data,
                                                                               content_type, status, message):
    response = client.post("/detect" + query, files={"image": (name, data, content_type)})
    assert response.status_code == status and message in response.text
    assert detector.min_scores == []
    assert client.post("/detect", files={"image": ("ok.png", png(Image.new("RGB", (8, 8))), "image/png")}).is_success


def test_a_request_that_is_not_a_multipart_upload_gets_415(client):
    assert client.post("/detect", json={"image": "family.png"}).status_code == 415


def test_a_detection_in_progress_leaves_the_service_answering(serve_run, serve_predictor):
    """The detector runs off the event loop: while it works, a classification is answered."""
    entered, released = threading.Event(), threading.Event()
    upload = {"image": ("family.png", png(Image.new("RGB", (64, 48))), "image/png")}

    class HeldDetector(FixedDetector):
        def detect(self, images, min_score=0.3):
            entered.set()
            if not released.wait(timeout=10):
                raise TimeoutError("nothing else was answered while the detector ran")
            return super().detect(images, min_score)

    async def scenario():
        app = create_app(serve_predictor, serve_run, SETTINGS, HeldDetector())
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
                detecting = asyncio.create_task(http.post("/detect", files=upload))
                while not entered.is_set():
                    await asyncio.sleep(0.01)
                classified = await http.post("/predict", files=upload)
                released.set()
                return classified, await detecting

    classified, detected = run_in_fresh_loop(scenario())
    assert classified.status_code == 200 and detected.status_code == 200
    assert len(detected.json()["detections"]) == 2


def test_detection_is_announced_and_documented_only_with_a_detector(client, serve_run, serve_predictor):
    assert client.get("/healthz").json()["detection"] is True
    operation = client.get("/openapi.json").json()["paths"]["/detect"]["post"]
    assert {"413", "415", "422", "503"} <= set(operation["responses"])
    assert {parameter["name"] for parameter in operation["parameters"]} == {"min_score"}
    with TestClient(create_app(serve_predictor, serve_run, SETTINGS)) as without:
        assert without.get("/healthz").json()["detection"] is False
        upload = {"image": ("family.png", png(Image.new("RGB", (8, 8))), "image/png")}
        assert without.post("/detect", files=upload).status_code == 404
        assert "/detect" not in without.get("/openapi.json").json()["paths"]


def _served_paths(run, monkeypatch) -> set[str]:
    """The routes ``simpsons serve --run RUN`` would serve, with the stand-in detector for the run's detector."""
    apps = []
    monkeypatch.setattr(DetectionPredictor, "from_run", classmethod(lambda cls, run_dir: FixedDetector()))
    monkeypatch.setattr(server, "serve", lambda app, settings, host, port: apps.append(app))
    assert main(["serve", "--run", str(run)]) == 0
    return {route.path for route in apps[0].routes}


def test_serve_offers_detection_when_the_run_holds_a_detector(serve_run, tmp_path, monkeypatch):
    assert "/detect" not in _served_paths(serve_run, monkeypatch)
    with_detector = RunDir(tmp_path / "run")
    shutil.copytree(serve_run, with_detector.path)
    with_detector.detector.make()
    with_detector.detector.best.write_bytes(b"weights")
    assert "/detect" in _served_paths(with_detector, monkeypatch)


@pytest.fixture(scope="module")
def detecting_server(serve_run, serve_predictor):
    yield from serving_in_thread(create_app(serve_predictor, serve_run, SETTINGS, FixedDetector()), SETTINGS)


@pytest.fixture(scope="module")
def classifying_server(serve_run, serve_predictor):
    yield from serving_in_thread(create_app(serve_predictor, serve_run, SETTINGS), SETTINGS)


def test_the_web_page_draws_the_characters_found_over_the_image_at_its_shown_size(detecting_server, browser,
                                                                                 tmp_path):
    picture = tmp_path / "family.png"
    Image.new("RGB", (240, 1000), (250, 200, 30)).save(picture)  # tall: shown smaller than its own size
    page = browser.new_page()
    try:
        page.goto(detecting_server + "/")
        page.set_input_files("#file", str(picture))
        # the classification, its Grad-CAM picture included, is laid out before the boxes are measured
        page.wait_for_function("document.querySelector('#cam').src && document.querySelector('#cam').complete",
                               timeout=PAGE_TIMEOUT_MS)
        page.click("#detect", timeout=PAGE_TIMEOUT_MS)
        page.locator("#scene-image").wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#scene-image').complete", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#found').textContent.length > 0", timeout=PAGE_TIMEOUT_MS)
        assert page.locator("#boxes .tag").all_text_contents() == ["bart_simpson 90 %", "homer_simpson 40 %"]
        assert page.locator("#found").text_content() == "2 characters found"
        shown = page.locator("#scene-image").bounding_box()
        assert shown["height"] < 1000  # scaled down, so the boxes must be too
        for box, (_, _, (x1, y1, x2, y2)) in zip(page.locator("#boxes .box").all(), FixedDetector.found):
            drawn = box.bounding_box()
            assert drawn["x"] == pytest.approx(shown["x"] + x1 * shown["width"], abs=SCREEN_TOLERANCE_PX)
            assert drawn["y"] == pytest.approx(shown["y"] + y1 * shown["height"], abs=SCREEN_TOLERANCE_PX)
            assert drawn["width"] == pytest.approx((x2 - x1) * shown["width"], abs=SCREEN_TOLERANCE_PX)
            assert drawn["height"] == pytest.approx((y2 - y1) * shown["height"], abs=SCREEN_TOLERANCE_PX)
    finally:
        page.close()


def test_the_web_page_offers_no_detection_without_a_detector(classifying_server, browser, tmp_path):
    picture = tmp_path / "family.png"
    Image.new("RGB", (64, 64), (250, 200, 30)).save(picture)
    page = browser.new_page()
    try:
        page.goto(classifying_server + "/")
        page.wait_for_load_state("networkidle")
        page.set_input_files("#file", str(picture))
        page.wait_for_function("document.querySelector('#label').textContent.length > 0", timeout=PAGE_TIMEOUT_MS)
        assert page.locator("#detect").is_hidden()
    finally:
        page.close()
