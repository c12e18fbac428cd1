"""Load against a running uvicorn (``benchmarks.soak``): every request answered 200, or 503 with
Retry-After once the service is overloaded; none lost or hung; memory flat; the service sheds an
overload and recovers when it ends. A few hundred requests always; the long soak is marked slow."""

import tempfile
from pathlib import Path

import pytest

from benchmarks.soak import SoakConfig, soak_service


def check(result: dict, max_growth_mib: float) -> None:
    phases = {phase["name"]: phase for phase in result["phases"]}
    for phase in phases.values():
        assert phase["lost"] == 0, phase
        assert phase["answered"] == phase["sent"], phase  # nothing hung, no connection dropped
        assert not phase["unexpected"], phase
        assert phase["shed_without_retry_after"] == 0, phase
    assert phases["baseline"]["statuses"] == {"200": phases["baseline"]["sent"]}
    overload = phases["overload"]
    assert overload["statuses"].get("503", 0) > 0, overload  # it shed ...
    assert overload["statuses"].get("200", 0) > 0, overload  # ... and kept serving
    assert result["recovery"]["normal_s"] is not None, result["recovery"]
    memory = result["memory"]
    assert memory["end_mib"] - memory["start_mib"] < max_growth_mib, memory
    assert result["server_alive"]


def test_a_few_hundred_requests_and_a_short_overload(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the soak makes its files
    config = SoakConfig(
        requests=300,
        concurrency=16,
        max_seconds=30,
        baseline=10,
        overload=4.0,
        overload_seconds=1.5,
        max_outstanding=512,
        warm_connections=32,
        recovery_max_seconds=15,
        timeout_s=30,
        settle_s=0.2,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    result = soak_service(config, env={"INSPECT_MAX_IN_FLIGHT": "16"}, log_dir=logs)
    check(result, max_growth_mib=80)
    assert result["recovery"]["normal_s"] < 10
    assert result["server_side"]["overload"]["503"]["p50_ms"] < 20, result["server_side"]
    assert list(tmp_path.iterdir()) == [logs]  # its temporary weights removed with it ...
    server_log = Path(result["server_log"])
    assert server_log.parent == logs and '"event": "request"' in server_log.read_text()  # ... its log kept


@pytest.mark.slow
def test_ten_thousand_requests_at_64_and_a_4x_overload():
    config = SoakConfig(
        requests=10_000, concurrency=64, max_seconds=150, overload_seconds=10, after_requests=5_000
    )
    result = soak_service(config)
    check(result, max_growth_mib=100)
    phases = {phase["name"]: phase for phase in result["phases"]}
    for name, sent in (("soak", 10_000), ("soak after", 5_000)):  # before and after the overload
        assert phases[name]["sent"] == sent and phases[name]["statuses"] == {"200": sent}, phases[name]
    memory = result["memory"]
    assert memory["after_second_soak_mib"] - memory["after_overload_mib"] < 20, memory  # flat
    server_side = result["server_side"]["overload"]["503"]
    assert server_side["p99_ms"] < 50, server_side  # refusals cost the service milliseconds
