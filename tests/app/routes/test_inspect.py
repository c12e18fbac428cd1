"""POST /inspect/{category}, end to end with the lifespan running: input forms, answers, errors,
batching across concurrent requests, fairness, back-pressure, timeouts and disconnects."""

import asyncio
import base64
import io
import logging
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import models.precision
from app.decode import decode_image
from app.inference import run_batch
from app.main import create_app
from app.settings import SettingsError
from models.calibration import Calibration
from models.checkpoint import load_checkpoint, save_checkpoint
from models.detector import AnomalyDetector, with_test_time_flips, with_texture
from models.precision import network_precision
from models.preprocess import to_image_size, to_model_input
from tests.app.conftest import (
    GREY_CATEGORY,
    RGB_CATEGORY,
    encode,
    entered,
    make_settings,
    png_bytes,
    random_image,
    serve,
    spy_on,
    wait_until,
)
from tests.conftest import tiny_config
from tests.models.test_head import head_detector
from tests.models.test_texture_memory import texture_detector

pytestmark = pytest.mark.anyio

PNG = {"content-type": "image/png"}


def png_of(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def files(*blobs: bytes, kind: str = "image/png") -> list:
    return [("file", (f"img{i}.png", blob, kind)) for i, blob in enumerate(blobs)]


# --- input forms and answers -------------------------------------------------------------------


async def test_raw_png_body(served):
    _, client = served
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(40, 30), headers=PNG)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["category"] == RGB_CATEGORY
    model = body["model"]
    assert model["input_size"] == 24 and model["color_mode"] == "RGB" and model["anomaly_map"] == "l2"
    assert model["test_time_flips"] == []  # the test checkpoint scores the image alone
    assert (model["pixel_threshold"], model["image_threshold"]) == (0.05, 0.1)
    assert model["version"].startswith(model["created_at"])
    (result,) = body["results"]
    assert result["filename"] is None
    assert (result["width"], result["height"]) == (30, 40)
    assert 0 <= result["normalized_score"] <= 1
    assert result["threshold"] == 0.1 and result["pixel_threshold"] == 0.05
    assert result["is_anomalous"] == (result["score"] > 0.1)
    assert 0 <= result["anomalous_area_fraction"] <= 1
    assert set(result) >= {"mask_png", "overlay_png"} and "anomaly_map_png" not in result
    assert png_of(result["mask_png"]).size == (30, 40)
    assert png_of(result["overlay_png"]).mode == "RGB"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "TIFF"])
async def test_raw_bodies_of_every_accepted_format(served, fmt):
    _, client = served
    data = encode(random_image(20, 20), fmt)
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}", content=data, headers={"content-type": f"image/{fmt.lower()}"}
    )
    assert response.status_code == 200, response.text


async def test_multipart_with_several_files_answers_in_order(served):
    _, client = served
    blobs = [png_bytes(20, 20, seed=1), png_bytes(33, 17, seed=2), png_bytes(24, 24, seed=3)]
    response = await client.post(f"/inspect/{RGB_CATEGORY}", files=files(*blobs))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["img0.png", "img1.png", "img2.png"]
    assert [(r["width"], r["height"]) for r in results] == [(20, 20), (17, 33), (24, 24)]
    assert len({r["score"] for r in results}) == 3


async def test_greyscale_checkpoint_accepts_any_input_mode(served):
    _, client = served
    rgba = np.dstack([random_image(16, 16), np.full((16, 16, 1), 128, np.uint8)])
    wide = (random_image(16, 16, channels=1)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    response = await client.post(f"/inspect/{GREY_CATEGORY}", files=files(encode(rgba), encode(wide)))
    assert response.status_code == 200, response.text
    assert response.json()["model"]["color_mode"] == "L"


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (None, {"mask_png", "overlay_png"}),
        ("mask", {"mask_png"}),
        ("overlay", {"overlay_png"}),
        ("anomaly_map", {"anomaly_map_png"}),
        ("Mask, anomaly_map ,overlay", {"mask_png", "overlay_png", "anomaly_map_png"}),
        ("", set()),
    ],
)
async def test_include_selects_the_pngs(served, include, expected):
    _, client = served
    params = {} if include is None else {"include": include}
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG, params=params)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert {key for key in result if key.endswith("_png")} == expected
    for key in expected:
        assert png_of(result[key]).size == (30, 40)
    if "anomaly_map_png" in expected:
        assert png_of(result["anomaly_map_png"]).mode == "L"


async def test_threshold_changes_the_mask_not_the_verdict(served):
    _, client = served
    url = f"/inspect/{RGB_CATEGORY}"
    calibrated = (await client.post(url, content=png_bytes(), headers=PNG)).json()["results"][0]
    low = (await client.post(url, content=png_bytes(), headers=PNG, params={"threshold": 0})).json()[
        "results"
    ][0]
    assert low["pixel_threshold"] == 0 and low["anomalous_area_fraction"] > 0.9
    assert np.asarray(png_of(low["mask_png"])).mean() > 0.9
    assert (low["score"], low["is_anomalous"], low["threshold"]) == (
        calibrated["score"],
        calibrated["is_anomalous"],
        calibrated["threshold"],
    )


async def test_accept_png_answers_the_overlay_itself(served):
    _, client = served
    url = f"/inspect/{RGB_CATEGORY}"
    as_json = (await client.post(url, content=png_bytes(), headers=PNG)).json()["results"][0]
    response = await client.post(url, content=png_bytes(), headers={**PNG, "accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (30, 40) and image.mode == "RGB"
    assert response.content == base64.b64decode(as_json["overlay_png"])
    assert float(response.headers["x-anomaly-score"]) == as_json["score"]
    assert float(response.headers["x-anomaly-normalized-score"]) == as_json["normalized_score"]
    assert response.headers["x-anomalous"] == str(as_json["is_anomalous"]).lower()


async def test_json_wins_unless_png_is_preferred(served):
    _, client = served
    accept = "application/json, image/png;q=0.5"
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers={**PNG, "accept": accept}
    )
    assert response.headers["content-type"] == "application/json"


async def test_png_answer_needs_exactly_one_image(served):
    _, client = served
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}", files=files(png_bytes(), png_bytes()), headers={"accept": "image/png"}
    )
    assert response.status_code == 406
    assert "accept application/json" in response.json()["detail"]


async def test_exif_orientation_sets_width_and_height(served):
    _, client = served
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(random_image(10, 20), "JPEG", exif=exif)
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}", content=data, headers={"content-type": "image/jpeg"}
    )
    result = response.json()["results"][0]
    assert (result["width"], result["height"]) == (10, 20)
    assert png_of(result["overlay_png"]).size == (10, 20)


# --- errors ------------------------------------------------------------------------------------


async def test_unknown_category_lists_the_available_ones(served):
    _, client = served
    response = await client.post("/inspect/widgte", content=png_bytes(), headers=PNG)
    assert response.status_code == 404
    assert response.json() == {
        "detail": "unknown category 'widgte'",
        "available": [GREY_CATEGORY, RGB_CATEGORY],
    }
    traversal = await client.post("/inspect/..%2F..%2Fweights%2Fwidget", content=png_bytes(), headers=PNG)
    assert traversal.status_code == 404


@pytest.mark.parametrize("content_type", ["text/plain", "image/gif", "application/octet-stream"])
async def test_unsupported_content_type_is_415(served, content_type):
    _, client = served
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}", content=b"GIF89a", headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert "image/png" in response.json()["detail"]


@pytest.mark.parametrize(
    "data",
    [b"this is text", png_bytes(64, 64)[:200], encode(random_image(), "GIF")],
    ids=["not-an-image", "truncated", "gif-bytes"],
)
async def test_undecodable_images_are_422(served, data):
    _, client = served
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=data, headers=PNG)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("image 0 is ")


async def test_a_bad_part_names_its_file(served):
    _, client = served
    response = await client.post(f"/inspect/{RGB_CATEGORY}", files=files(png_bytes(), b"garbage"))
    assert response.status_code == 422
    assert response.json() == {
        "detail": "part 1 ('img1.png') is not a PNG, JPEG, BMP or TIFF image",
        "filename": "img1.png",
    }


async def test_missing_file_is_422(served):
    _, client = served
    response = await client.post(
        f"/inspect/{RGB_CATEGORY}", files={"image": ("a.png", png_bytes(), "image/png")}
    )
    assert response.status_code == 422
    assert "named 'file'" in response.json()["detail"]
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=b"", headers=PNG)
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"include": "mask,heatmap"}, "include: unknown 'heatmap'"),
        ({"threshold": "-1"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"threshold": "inf"}, "threshold"),
        ({"threshold": "high"}, "threshold"),
    ],
)
async def test_bad_parameters_are_422(served, params, message):
    _, client = served
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG, params=params)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert isinstance(response.json()["detail"], str)


async def test_upload_over_the_limit_by_content_length(weights_dir):
    async with serve(make_settings(weights_dir, max_upload_mb=0.01)) as (_, client):  # 10 KiB
        small = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(20, 20), headers=PNG)
        assert small.status_code == 200
        response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(100, 100), headers=PNG)
        assert response.status_code == 413
        assert "10485 bytes" in response.json()["detail"]


async def test_upload_over_the_limit_while_a_chunked_body_streams(weights_dir):
    sent = []

    async def chunks():
        for _ in range(100):
            sent.append(1024)
            yield b"\0" * 1024

    async with serve(make_settings(weights_dir, max_upload_mb=0.01)) as (_, client):
        response = await client.post(f"/inspect/{RGB_CATEGORY}", content=chunks(), headers=PNG)
    assert response.status_code == 413
    assert len(sent) < 20  # the rest of the body was never read


async def test_too_many_pixels_is_413(weights_dir):
    async with serve(make_settings(weights_dir, max_image_pixels=1000)) as (_, client):
        response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(40, 30), headers=PNG)
    assert response.status_code == 413
    assert "1200 pixels, more than the 1000 allowed" in response.json()["detail"]


async def test_too_many_images_is_413(weights_dir):
    async with serve(make_settings(weights_dir, max_images_per_request=2)) as (_, client):
        response = await client.post(f"/inspect/{RGB_CATEGORY}", files=files(*[png_bytes()] * 3))
    assert response.status_code == 413
    assert "at most 2" in response.json()["detail"]


# --- batching ----------------------------------------------------------------------------------


async def test_concurrent_requests_share_forward_passes_and_get_their_own_results(weights_dir):
    settings = make_settings(weights_dir, max_batch_wait_ms=300, max_batch_size=16)
    sizes = [(40, 30), (24, 24), (50, 20), (31, 33), (24, 60), (28, 28), (45, 45), (19, 26)]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    async with serve(settings) as (app, client):
        stats = app.state.services.batcher.stats
        before = stats.batches_run
        responses = await asyncio.gather(
            *(client.post(f"/inspect/{RGB_CATEGORY}", content=encode(image), headers=PNG) for image in images)
        )
        batches = stats.batches_run - before
    assert all(response.status_code == 200 for response in responses)
    assert batches < len(images)
    assert stats.images_run == len(images)
    checkpoint = load_checkpoint(weights_dir / f"{RGB_CATEGORY}.safetensors")
    for image, response in zip(images, responses, strict=True):
        result = response.json()["results"][0]
        with torch.inference_mode():
            alone = checkpoint.detector(to_model_input([torch.from_numpy(image)], checkpoint.input_size))
        assert result["score"] == pytest.approx(float(alone.image_score[0]), rel=1e-5, abs=1e-7)
        assert (result["width"], result["height"]) == (image.shape[1], image.shape[0])


async def test_a_bad_image_does_not_disturb_the_batch_it_would_have_joined(weights_dir):
    settings = make_settings(weights_dir, max_batch_wait_ms=200)
    async with serve(settings) as (app, client):
        url = f"/inspect/{RGB_CATEGORY}"
        bad, good = await asyncio.gather(
            client.post(url, files=files(png_bytes(seed=1), b"not an image")),
            client.post(url, files=files(png_bytes(seed=2), png_bytes(seed=3))),
        )
        stats = app.state.services.batcher.stats
    assert bad.status_code == 422 and good.status_code == 200
    assert stats.images_run == 2  # the bad request's good image never reached the queue


async def test_categories_are_served_in_turn(weights_dir):
    settings = make_settings(weights_dir, max_batch_wait_ms=0, max_batch_size=2)
    async with serve(settings) as (app, client):
        gate = threading.Event()
        passes = []
        rgb = spy_on(app, RGB_CATEGORY, gate=gate, log=passes, label="rgb")
        spy_on(app, GREY_CATEGORY, log=passes, label="grey")
        url_rgb, url_grey = f"/inspect/{RGB_CATEGORY}", f"/inspect/{GREY_CATEGORY}"
        first = asyncio.ensure_future(client.post(url_rgb, content=png_bytes(), headers=PNG))
        await entered(rgb)  # the worker is busy with RGB
        batcher = app.state.services.batcher
        busy = asyncio.ensure_future(
            client.post(url_rgb, files=files(*[png_bytes(seed=s) for s in range(6)]))
        )
        await wait_until(lambda: batcher.waiting == 6)
        quiet = asyncio.ensure_future(client.post(url_grey, content=png_bytes(channels=1), headers=PNG))
        await wait_until(lambda: batcher.waiting == 7)
        gate.set()
        responses = await asyncio.gather(first, busy, quiet)
    assert all(response.status_code == 200 for response in responses)
    # The grey image, queued after six RGB images, runs right after the pass in flight.
    assert passes == [("rgb", 1), ("grey", 1), ("rgb", 2), ("rgb", 2), ("rgb", 2)]


async def test_a_full_queue_answers_503_with_retry_after(weights_dir):
    settings = make_settings(weights_dir, max_queue=2, max_images_per_request=2, max_batch_wait_ms=0)
    async with serve(settings) as (app, client):
        gate = threading.Event()
        spy = spy_on(app, RGB_CATEGORY, gate=gate)
        url = f"/inspect/{RGB_CATEGORY}"
        running = asyncio.ensure_future(client.post(url, content=png_bytes(), headers=PNG))
        await entered(spy)
        waiting = asyncio.ensure_future(client.post(url, files=files(png_bytes(), png_bytes())))
        await wait_until(lambda: app.state.services.batcher.waiting == 2)
        refused = await client.post(url, content=png_bytes(), headers=PNG)
        gate.set()
        assert (await running).status_code == 200 and (await waiting).status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "queue is full" in refused.json()["detail"]


async def test_an_image_waiting_past_the_timeout_answers_504(weights_dir):
    settings = make_settings(weights_dir, request_timeout_s=0.2, max_batch_wait_ms=0)
    async with serve(settings) as (app, client):
        gate = threading.Event()
        spy = spy_on(app, RGB_CATEGORY, gate=gate)
        url = f"/inspect/{RGB_CATEGORY}"
        slow = asyncio.ensure_future(client.post(url, content=png_bytes(), headers=PNG))
        await entered(spy)
        late = await client.post(url, content=png_bytes(seed=1), headers=PNG)
        gate.set()
        assert (await slow).status_code == 504  # its pass outlasted the timeout too
        await wait_until(lambda: len(spy.batch_sizes) >= 1)
    assert late.status_code == 504
    assert "timeout" in late.json()["detail"]
    assert spy.batch_sizes == [1]  # the late image was dropped, never computed


async def test_a_failing_forward_pass_is_a_clean_500(served):
    app, client = served
    spy_on(app, RGB_CATEGORY, error=RuntimeError("device-side assert"))
    response = await client.post(f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers=PNG)
    assert response.status_code == 500
    assert response.json() == {
        "detail": "inference failed (RuntimeError)",
        "request_id": response.headers["x-request-id"],
    }
    other = await client.post(f"/inspect/{GREY_CATEGORY}", content=png_bytes(channels=1), headers=PNG)
    assert other.status_code == 200


async def test_a_client_that_disconnects_is_dropped_before_compute(served):
    app, client = served
    gate = threading.Event()
    spy = spy_on(app, RGB_CATEGORY, gate=gate)
    url = f"/inspect/{RGB_CATEGORY}"
    first = asyncio.ensure_future(client.post(url, content=png_bytes(), headers=PNG))
    await entered(spy)

    body, gone = png_bytes(seed=1), asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("inspect.test", 80),
    }
    batcher = app.state.services.batcher
    leaving = asyncio.ensure_future(app(scope, receive, send))
    await wait_until(lambda: batcher.waiting == 1)
    gone.set()
    await leaving
    gate.set()
    assert (await first).status_code == 200
    await wait_until(lambda: batcher.stats.category(RGB_CATEGORY).cancelled == 1)
    assert spy.batch_sizes == [1]  # only the first request's image was computed
    assert batcher.stats.category(RGB_CATEGORY).images == 1


@pytest.mark.parametrize(
    "anomaly_map, texture", [("head", False), ("head+ssim+gms", False), ("head+ssim+gms", True)]
)
async def test_a_checkpoint_with_a_head_is_served_with_the_heads_map(tmp_path, anomaly_map, texture):
    calibration = Calibration(pixel_threshold=0.5, image_threshold=0.5, score_scale=0.1)
    if texture:
        # a pixel threshold in the range of these untrained maps, so that neither saturates at 255
        calibration = Calibration(pixel_threshold=20.0, image_threshold=0.5, score_scale=0.1)
        detector = texture_detector()
        detector.texture.remember(torch.rand(4, 3, 24, 24))
        detector.set_map_scales(0.2, 0.05, 3.0)  # as calibration leaves them: loaded with the weights
    else:
        detector = head_detector(anomaly_map=anomaly_map)
        if detector.fused:
            detector.set_map_scales(0.2, 0.05)
    path = save_checkpoint(tmp_path / "gear.safetensors", detector, category="gear", calibration=calibration)
    blob = png_bytes(40, 30, seed=7)
    alone = run_batch(load_checkpoint(path), [decode_image(blob, "RGB", 10**6)], [None], torch.device("cpu"))[
        0
    ]
    async with serve(make_settings(tmp_path)) as (_, client):
        response = await client.post(
            "/inspect/gear", content=blob, headers=PNG, params={"include": "anomaly_map"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["anomaly_map"] == anomaly_map
    (result,) = body["results"]
    assert result["score"] == pytest.approx(alone.score, rel=1e-5)
    if anomaly_map == "head":
        assert 0 <= result["score"] <= 1  # a pooled probability of the head's segmentation
    else:  # in units of the parts' normal scales, which travelled in the checkpoint
        assert result["score"] > 1
    served_map = png_of(result["anomaly_map_png"])
    assert served_map.size == (30, 40)
    assert np.abs(np.asarray(served_map, dtype=int) - alone.anomaly_map.astype(int)).max() <= 1
    if texture:  # the texture distance is part of the served map
        plain = with_texture(detector, None)
        plain.set_map_scales(0.2, 0.05)
        path = save_checkpoint(
            tmp_path / "plain.safetensors", plain, category="plain", calibration=calibration
        )
        image = decode_image(blob, "RGB", 10**6)
        (without,) = run_batch(load_checkpoint(path), [image], [None], torch.device("cpu"))
        assert without.score == pytest.approx(alone.score, rel=1e-5)
        assert np.abs(without.anomaly_map.astype(int) - alone.anomaly_map.astype(int)).max() > 5


async def test_a_checkpoint_with_test_time_flips_is_served_over_its_views_and_says_so(tmp_path):
    calibration = Calibration(pixel_threshold=0.5, image_threshold=0.5, score_scale=0.1)
    plain = head_detector(anomaly_map="head+ssim+gms")
    flipped = with_test_time_flips(plain, ("h", "v", "hv"))
    for detector, name in ((plain, "plain"), (flipped, "flipped")):
        detector.set_map_scales(0.2, 0.05)
        save_checkpoint(tmp_path / f"{name}.safetensors", detector, category=name, calibration=calibration)
    blob = png_bytes(40, 30, seed=7)
    image = decode_image(blob, "RGB", 10**6)
    (alone,) = run_batch(
        load_checkpoint(tmp_path / "flipped.safetensors"), [image], [None], torch.device("cpu")
    )
    async with serve(make_settings(tmp_path)) as (_, client):
        flipped_answer = (await client.post("/inspect/flipped", content=blob, headers=PNG)).json()
        plain_answer = (await client.post("/inspect/plain", content=blob, headers=PNG)).json()
    assert flipped_answer["model"]["test_time_flips"] == ["h", "v", "hv"]
    assert plain_answer["model"]["test_time_flips"] == []
    (flipped_result,), (plain_result,) = flipped_answer["results"], plain_answer["results"]
    assert flipped_result["score"] == pytest.approx(alone.score, rel=1e-5)  # the views, as offline
    assert flipped_result["score"] != pytest.approx(plain_result["score"], rel=1e-3)


async def test_a_letterbox_checkpoint_keeps_the_aspect_ratio_and_maps_back_onto_the_image(tmp_path):
    torch.manual_seed(0)
    calibration = Calibration(pixel_threshold=0.02, image_threshold=0.5, score_scale=0.1)
    stretch = AnomalyDetector(tiny_config()).eval()
    letterbox = AnomalyDetector(replace(tiny_config(), resize="letterbox")).eval()
    letterbox.load_state_dict(stretch.state_dict())  # the same weights: only the resize differs
    for detector, name in ((stretch, "stretch"), (letterbox, "letterbox")):
        save_checkpoint(tmp_path / f"{name}.safetensors", detector, category=name, calibration=calibration)
    image = random_image(16, 48, seed=3)  # 3:1
    async with serve(make_settings(tmp_path)) as (_, client):
        answers = {
            name: (await client.post(f"/inspect/{name}", content=encode(image), headers=PNG)).json()
            for name in ("stretch", "letterbox")
        }
    assert answers["letterbox"]["model"]["resize"] == "letterbox"
    assert answers["stretch"]["model"]["resize"] == "stretch"
    with torch.inference_mode():
        output = letterbox(to_model_input([torch.from_numpy(image)], 24, "letterbox"))
    amap = to_image_size(output.anomaly_map[0], 16, 48, "letterbox")  # the image's band, resized
    (result,) = answers["letterbox"]["results"]
    assert result["score"] == pytest.approx(float(output.image_score[0]), rel=1e-5)
    mask = np.asarray(png_of(result["mask_png"])) > 0
    assert mask.shape == (16, 48)
    assert np.array_equal(mask, (amap > 0.02).numpy())
    assert result["score"] != pytest.approx(answers["stretch"]["results"][0]["score"], rel=1e-3)


async def test_a_region_of_interest_checkpoint_inspects_its_box_and_masks_nothing_outside(tmp_path):
    torch.manual_seed(0)
    calibration = Calibration(pixel_threshold=0.0, image_threshold=0.5, score_scale=0.1)  # every pixel > 0
    detector = AnomalyDetector(replace(tiny_config(), roi=(0.5, 0.25, 1.0, 0.75))).eval()
    save_checkpoint(tmp_path / "boxed.safetensors", detector, category="boxed", calibration=calibration)
    image = random_image(40, 60, seed=6)
    async with serve(make_settings(tmp_path)) as (_, client):
        answer = (await client.post("/inspect/boxed", content=encode(image), headers=PNG)).json()
        listed = (await client.get("/categories/boxed")).json()
    assert answer["model"]["roi"] == listed["roi"] == [0.5, 0.25, 1.0, 0.75]  # integrators see the box
    with torch.inference_mode():
        output = detector(to_model_input([torch.from_numpy(image[10:30, 30:60])], 24))  # rows, columns
    (result,) = answer["results"]
    assert result["score"] == pytest.approx(float(output.image_score[0]), rel=1e-5)  # the box alone
    mask = np.asarray(png_of(result["mask_png"])) > 0
    assert mask.shape == (40, 60)  # the whole image's pixels
    assert mask[10:30, 30:60].all()
    mask[10:30, 30:60] = False
    assert not mask.any()  # outside the box nothing was inspected, nothing is flagged
    assert result["anomalous_area_fraction"] == pytest.approx(20 * 30 / (40 * 60), abs=1e-6)


async def test_an_exposure_normalised_checkpoint_answers_a_dimmer_shot_as_the_same_part(tmp_path):
    torch.manual_seed(0)
    calibration = Calibration(pixel_threshold=0.02, image_threshold=0.5, score_scale=0.1)
    detector = AnomalyDetector(replace(tiny_config(), exposure_mean=0.4)).eval()
    save_checkpoint(tmp_path / "lit.safetensors", detector, category="lit", calibration=calibration)
    part = np.random.default_rng(9).integers(80, 240, (32, 32, 3), dtype=np.uint8)
    dimmer = (part * 0.5).round().astype(np.uint8)
    async with serve(make_settings(tmp_path)) as (_, client):
        answers = [
            (await client.post("/inspect/lit", content=encode(shot), headers=PNG)).json()
            for shot in (part, dimmer)
        ]
    assert answers[0]["model"]["exposure_mean"] == 0.4  # integrators see that images are rescaled
    bright, dim = (answer["results"][0] for answer in answers)
    assert dim["score"] == pytest.approx(bright["score"], rel=0.02)
    with torch.inference_mode():
        unnormalised = replace(detector.config, exposure_mean=None)
        plain = AnomalyDetector(unnormalised).eval()
        plain.load_state_dict(detector.state_dict())
        dim_plain = plain(to_model_input([torch.from_numpy(dimmer)], 24)).image_score[0]
    assert dim["score"] != pytest.approx(float(dim_plain), rel=0.02)  # the rescaling made the difference


async def test_a_checkpoint_with_a_larger_image_size_scores_the_image_at_that_size(tmp_path):
    torch.manual_seed(0)
    calibration = Calibration(pixel_threshold=0.02, image_threshold=0.5, score_scale=0.1)
    detector = AnomalyDetector(replace(tiny_config(), image_size=48)).eval()
    save_checkpoint(tmp_path / "fine.safetensors", detector, category="fine", calibration=calibration)
    image = random_image(40, 60, seed=5)
    async with serve(make_settings(tmp_path)) as (_, client):
        answer = (await client.post("/inspect/fine", content=encode(image), headers=PNG)).json()
    assert answer["model"]["input_size"] == 48
    with torch.inference_mode():
        output = detector(to_model_input([torch.from_numpy(image)], 48, "stretch"))
    assert output.anomaly_map.shape == (1, 48, 48)  # not the CAE's 24²
    (result,) = answer["results"]
    assert result["score"] == pytest.approx(float(output.image_score[0]), rel=1e-5)
    mask = np.asarray(png_of(result["mask_png"])) > 0
    assert mask.shape == (40, 60)
    assert np.array_equal(mask, (to_image_size(output.anomaly_map[0], 40, 60, "stretch") > 0.02).numpy())


async def test_a_bfloat16_service_runs_the_networks_in_bfloat16_and_says_so(tmp_path, monkeypatch):
    # bfloat16 autocast runs on any CPU; only the check of native support is pretended here.
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: True)
    detector = texture_detector()  # head, fused map and texture memory: every part of the map
    calibration = Calibration(pixel_threshold=0.5, image_threshold=0.5, score_scale=0.1)
    save_checkpoint(tmp_path / "half.safetensors", detector, category="half", calibration=calibration)
    image = random_image(40, 60, seed=6)
    answers = {}
    for precision in ("float32", "bfloat16"):
        async with serve(make_settings(tmp_path, precision=precision)) as (_, client):
            answers[precision] = (
                await client.post("/inspect/half", content=encode(image), headers=PNG)
            ).json()
    assert answers["float32"]["model"]["precision"] == "float32"
    assert answers["bfloat16"]["model"]["precision"] == "bfloat16"  # integrators see what computed it
    with torch.inference_mode(), network_precision("bfloat16", torch.device("cpu")):
        expected = detector(to_model_input([torch.from_numpy(image)], 24)).image_score[0]
    half, full = answers["bfloat16"]["results"][0]["score"], answers["float32"]["results"][0]["score"]
    assert half == pytest.approx(float(expected), rel=1e-5)
    assert half != full and half == pytest.approx(full, rel=0.05)  # close to float32, not equal


async def test_a_checkpoint_calibrated_in_another_precision_is_served_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: True)
    for name, details in (
        ("old", {}),
        ("float", {"precision": "float32"}),
        ("half", {"precision": "bfloat16"}),
    ):
        calibration = Calibration(pixel_threshold=0.5, image_threshold=0.5, score_scale=0.1, details=details)
        save_checkpoint(
            tmp_path / f"{name}.safetensors", texture_detector(), category=name, calibration=calibration
        )
    with caplog.at_level(logging.WARNING, logger="app.batcher"):
        async with serve(make_settings(tmp_path, precision="bfloat16")) as (_, client):
            assert (await client.post("/inspect/old", content=png_bytes(), headers=PNG)).status_code == 200
    warned = sorted(
        r.getMessage().split()[0] for r in caplog.records if "was calibrated with" in r.getMessage()
    )
    assert warned == ["float", "old"]  # older checkpoints were calibrated in float32
    assert "calibrate --precision bfloat16" in caplog.text


async def test_bfloat16_where_the_device_only_emulates_it_stops_the_start(weights_dir, monkeypatch):
    monkeypatch.setattr(models.precision, "native_bfloat16", lambda device: False)
    application = create_app(make_settings(weights_dir, precision="bfloat16"))
    with pytest.raises(SettingsError, match="INSPECT_PRECISION=bfloat16: cpu does not compute bfloat16"):
        async with application.router.lifespan_context(application):
            pass
