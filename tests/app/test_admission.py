"""Admission control: the counter and its limit, and the middleware that refuses inspections beyond
it at once (503, Retry-After, JSON, request id) while probes and the other routes go on answering."""

import asyncio
import threading

import pytest

from app.admission import Admission
from app.errors import PayloadTooLarge, QueueFull
from tests.app.conftest import RGB_CATEGORY, entered, make_settings, png_bytes, serve, spy_on, wait_until

PNG = {"content-type": "image/png"}
URL = f"/inspect/{RGB_CATEGORY}"


def test_places_up_to_the_capacity_then_refusals():
    admission = Admission(2)
    admission.acquire()
    admission.acquire()
    with pytest.raises(QueueFull, match=r"too many requests in progress \(2 of 2\)") as refused:
        admission.acquire()
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    assert (admission.in_flight, admission.refused) == (2, 1)
    admission.release()
    admission.acquire()
    assert admission.in_flight == 2


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="INSPECT_MAX_IN_FLIGHT"):
        Admission(0)


@pytest.mark.anyio
async def test_beyond_the_limit_an_inspection_is_refused_at_once_and_the_rest_answers(weights_dir):
    async with serve(make_settings(weights_dir, max_in_flight=1)) as (app, client):
        admission = app.state.services.batcher.admission
        gate = threading.Event()
        spy = spy_on(app, RGB_CATEGORY, gate=gate)
        held = asyncio.ensure_future(client.post(URL, content=png_bytes(), headers=PNG))
        await entered(spy)
        read = []

        async def body():
            read.append(1)
            yield png_bytes()

        refused = await client.post(URL, content=body(), headers=PNG)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1" and refused.headers["x-request-id"]
        assert refused.json() == {"detail": "too many requests in progress (1 of 1); retry shortly"}
        assert not read  # refused before its body was read
        for path in ("/healthz", "/readyz", "/categories"):
            assert (await client.get(path)).status_code == 200  # never refused
        gate.set()
        assert (await held).status_code == 200
        assert admission.in_flight == 0 and admission.refused == 1
        assert (await client.post(URL, content=png_bytes(), headers=PNG)).status_code == 200


@pytest.mark.anyio
async def test_a_place_is_given_back_whatever_ends_the_request(weights_dir):
    async with serve(make_settings(weights_dir, max_in_flight=2)) as (app, client):
        admission = app.state.services.batcher.admission
        assert (await client.post(URL, content=b"not an image", headers=PNG)).status_code == 422
        spy_on(app, RGB_CATEGORY, error=RuntimeError("boom"))
        assert (await client.post(URL, content=png_bytes(), headers=PNG)).status_code == 500
        gate = threading.Event()
        spy = spy_on(app, RGB_CATEGORY, gate=gate)
        leaving = asyncio.ensure_future(client.post(URL, content=png_bytes(), headers=PNG))
        await entered(spy)
        leaving.cancel()  # the client goes away mid-inference
        await asyncio.gather(leaving, return_exceptions=True)
        gate.set()
        await wait_until(lambda: admission.in_flight == 0)
        assert admission.refused == 0


def test_pixels_are_reserved_within_the_budget():
    admission = Admission(4, pixel_capacity=1000)
    admission.reserve(600)
    with pytest.raises(QueueFull, match=r"too many pixels being processed \(600 of 1000, this request 500\)"):
        admission.reserve(500)
    with pytest.raises(PayloadTooLarge, match="hold 1001 pixels together, more than the 1000"):
        admission.reserve(1001)  # could never fit: 413, not 503
    admission.give_back(600)
    admission.reserve(1000)
    assert admission.pixels == 1000
    Admission(1).reserve(10**12)  # no budget: nothing is counted


@pytest.mark.anyio
async def test_the_pixels_of_a_request_are_admitted_before_decoding_and_given_back(weights_dir):
    settings = make_settings(weights_dir, max_pixels_in_flight=3000)
    async with serve(settings) as (app, client):
        admission = app.state.services.batcher.admission
        too_many = files(png_bytes(40, 30), png_bytes(40, 30), png_bytes(40, 30))  # 3600 pixels
        refused = await client.post(URL, files=too_many)
        assert refused.status_code == 413 and "INSPECT_MAX_PIXELS_IN_FLIGHT" in refused.json()["detail"]
        gate = threading.Event()
        spy = spy_on(app, RGB_CATEGORY, gate=gate)
        held = asyncio.ensure_future(client.post(URL, files=files(png_bytes(40, 30), png_bytes(40, 30))))
        await entered(spy)
        assert admission.pixels == 2400
        busy = await client.post(URL, content=png_bytes(40, 30), headers=PNG)  # 1200 more: not now
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        gate.set()
        assert (await held).status_code == 200
        assert admission.pixels == 0 and admission.in_flight == 0
        assert (await client.post(URL, content=png_bytes(40, 30), headers=PNG)).status_code == 200
        assert admission.pixels == 0


def files(*blobs: bytes) -> list:
    return [("file", (f"img{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


@pytest.mark.anyio
async def test_a_stalled_upload_gets_408_and_gives_its_place_back(weights_dir):
    async with serve(make_settings(weights_dir, max_in_flight=1, upload_timeout_s=0.3)) as (app, client):
        admission = app.state.services.batcher.admission

        async def trickle():
            yield png_bytes()[:20]
            await asyncio.sleep(5)  # a client that stops sending
            yield b""

        stalled = await client.post(URL, content=trickle(), headers=PNG)
        assert stalled.status_code == 408
        assert stalled.json() == {"detail": "the upload did not finish within 0.3 s (20 bytes received)"}
        assert stalled.headers["connection"] == "close"
        assert admission.in_flight == 0  # its place is free again
        assert (await client.post(URL, content=png_bytes(), headers=PNG)).status_code == 200
