"""GET /categories and /categories/{category}: metadata and load state of every checkpoint."""

import pytest

from tests.app.conftest import GREY_CATEGORY, RGB_CATEGORY, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio


async def test_list_shows_every_model_with_its_metadata(served):
    _, client = served
    response = await client.get("/categories")
    assert response.status_code == 200
    categories = {info["category"]: info for info in response.json()["categories"]}
    assert list(categories) == [GREY_CATEGORY, RGB_CATEGORY]
    widget = categories[RGB_CATEGORY]
    assert widget["state"] == "ready" and widget["error"] is None
    assert widget["file"] == "widget.safetensors"
    assert (widget["input_size"], widget["resize"], widget["color_mode"]) == (24, "stretch", "RGB")
    assert widget["exposure_mean"] is None  # images taken as they are
    assert widget["roi"] is None  # the whole image is inspected
    assert (widget["anomaly_map"], widget["test_time_flips"]) == ("l2", [])  # how its scores are made
    assert categories[GREY_CATEGORY]["color_mode"] == "L"
    assert (widget["pixel_threshold"], widget["image_threshold"]) == (0.05, 0.1)
    assert widget["calibration"]["method"] == "normal-quantile"
    assert widget["version"].startswith(widget["created_at"])


async def test_one_category_and_an_unknown_one(served):
    _, client = served
    response = await client.get(f"/categories/{RGB_CATEGORY}")
    assert response.status_code == 200 and response.json()["category"] == RGB_CATEGORY
    missing = await client.get("/categories/nope")
    assert missing.status_code == 404 and missing.json()["available"] == [GREY_CATEGORY, RGB_CATEGORY]


async def test_a_failed_checkpoint_is_reported_and_the_good_one_serves(weights_dir):
    (weights_dir / "cracked.safetensors").write_bytes(b"\x00" * 64)
    async with serve(make_settings(weights_dir)) as (_, client):
        info = (await client.get("/categories/cracked")).json()
        assert info["state"] == "failed"
        assert info["error"].startswith("cracked.safetensors: ")
        assert info["input_size"] is None
        failed = await client.post(
            "/inspect/cracked", content=png_bytes(), headers={"content-type": "image/png"}
        )
        assert failed.status_code == 503 and failed.json()["state"] == "failed"
        assert "retry-after" not in failed.headers  # retrying will not mend the file
        good = await client.post(
            f"/inspect/{RGB_CATEGORY}", content=png_bytes(), headers={"content-type": "image/png"}
        )
        assert good.status_code == 200
