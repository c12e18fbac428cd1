"""Schemathesis against the service's own OpenAPI schema, on a running uvicorn.

For every operation the schema describes, positive cases (valid by the schema) and negative ones
(invalid on purpose), on a known category as often as on a random one. Each answer must be no 5xx,
a documented status with a documented content type and headers, a body that matches the schema,
and a 4xx for data the schema forbids; and a good request right after must be answered correctly.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.app.conftest import RGB_CATEGORY

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a dev dependency (pyproject [dev])"
)

from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Per operation and mode; the default run replays the same cases, a longer random search on demand:
#   SCHEMATHESIS_EXAMPLES=500 python -m pytest tests/app/hostile/test_openapi_fuzz.py
EXPLORE = os.environ.get("SCHEMATHESIS_EXAMPLES")
EXAMPLES = int(EXPLORE or 25)


@pytest.fixture(scope="module")
def schema(live):
    loaded = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    # API keys have tests of their own (tests/app/test_auth.py); this service runs without keys.
    loaded.config.generation.update(with_security_parameters=False)
    return loaded


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def cases(operation, mode: GenerationMode):
    """Cases of ``operation``; where the path names a category, half of them name one that exists."""
    random_category = operation.as_strategy(mode)
    if "{category}" not in operation.path:
        return random_category
    return st.one_of(random_category, operation.as_strategy(mode, path_parameters={"category": RGB_CATEGORY}))


def test_the_schema_lists_the_inspection_routes(schema):
    paths = {(operation.method.upper(), operation.path) for operation in operations(schema)}
    assert {("POST", "/inspect/{category}"), ("GET", "/categories"), ("GET", "/readyz")} <= paths


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_answers_as_documented(live, schema, mode):
    for operation in operations(schema):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not EXPLORE,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases(operation, mode))
        def answers_as_documented(case):
            response = case.call(base_url=live.url, timeout=30)
            case.validate_response(response, checks=CHECKS)
            live.assert_serves()

        try:
            answers_as_documented()
        except Unsatisfiable:  # no parameter and no body: nothing to make invalid (GET /healthz)
            assert mode == GenerationMode.NEGATIVE, operation.path
        except Exception as err:
            err.add_note(f"operation: {operation.method.upper()} {operation.path} ({mode})")
            raise
    assert live.alive()
