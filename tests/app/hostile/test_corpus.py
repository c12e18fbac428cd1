"""Every case of the hostile corpus gets its documented answer (a 4xx with a JSON ``detail``, or a
correct 200), never a 5xx or a hang, and the service answers a good request correctly right after.

Twice: in process (the ASGI app, paths exactly as written), then on the wire against a running
uvicorn, whose HTTP parser sees the bytes first."""

import pytest

from tests.app.hostile.conftest import assert_error_answer, assert_serves, send_raw
from tests.app.hostile.corpus import Hostile, corpus

pytestmark = [
    pytest.mark.anyio,
    # the lifespan silences it in service; pytest restores the warning filters for each test
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

CASES = corpus()
IDS = [case.name for case in CASES]


def check_answer(case: Hostile, answer) -> None:
    if case.status >= 400:
        assert_error_answer(answer, case.status)
        return
    assert answer.status == case.status, answer.body[:500]
    body = answer.json()
    assert len(body["results"]) == 1
    assert case.check is None or case.check(body), body["results"][0]


def test_names_are_unique():
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_hostile_input_in_process(hostile_app, case: Hostile):
    answer = await send_raw(
        hostile_app, "POST", case.path, query=case.query, headers=case.headers, body=case.content()
    )
    check_answer(case, answer)
    await assert_serves(hostile_app)


def test_hostile_inputs_on_the_wire(live):
    failures = []
    for case in CASES:
        target = case.path + (f"?{case.query}" if case.query else "")
        answer = live.request("POST", target, case.content(), case.headers)
        try:
            check_answer(case, answer)
        except AssertionError as err:
            failures.append(f"{case.name}: {answer.status} {err}")
    assert not failures, "\n".join(failures)
    live.assert_serves()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/inspect/widget", 405),
        ("PUT", "/categories", 405),
        ("GET", "/nowhere", 404),
        ("GET", "/categories/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/categories/widget%00", 404),
        ("GET", "/categories/", 404),
    ],
)
async def test_other_routes_answer_json_errors(hostile_app, method, path, status):
    assert_error_answer(await send_raw(hostile_app, method, path), status)
    await assert_serves(hostile_app)
