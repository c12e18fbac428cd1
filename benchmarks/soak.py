"""Soak and overload: every request counted, the server's memory watched, load shedding and recovery timed.

Starts ``uvicorn app.main:app`` on a free loopback port serving a tiny checkpoint (built here, or
``--weights-dir``), or loads a running service (``--url``, ``--pid`` for its memory), and runs:

1. **baseline**: ``--baseline`` requests one after another: the normal latency;
2. **soak**: ``--requests`` requests at closed-loop concurrency ``--concurrency``, stopped early at
   ``--max-seconds``; its throughput is the sustainable rate;
3. **overload**: Poisson arrivals at ``--overload`` × the sustainable rate for ``--overload-seconds``
   (open loop: requests leave on schedule whatever the service does); the service must shed the
   excess with fast 503s carrying Retry-After while the requests it admits keep a bounded latency;
4. **recovery**: once the overload's arrivals stop, one request after another until one succeeds
   within ``--recovered-factor`` × the baseline p50 (at least +20 ms): the time that took;
5. **soak after** (``--after-requests``): the soak again, to show the same throughput and memory.

Every request ends as an HTTP status or a client-side failure ("timeout", "ConnectionResetError",
...), and is counted: sent = answered + failed, none lost. The server's resident memory (``VmRSS``
from ``/proc/<pid>/status``) is sampled every 0.25 s. A service started here also reports the
latency it logged itself (its JSON access log), which the client's own delays cannot inflate.
The client is a minimal HTTP/1.1 one over asyncio streams with its garbage collector off: on a
small machine it shares the CPU with the server, and httpx would be the bottleneck at 3000
requests/s. Writes ``soak.json`` and ``soak.md`` into ``--out``.

    python -m benchmarks.soak                                   # 10 000 requests at 64, 4× overload
    python -m benchmarks.soak --requests 30000 --after-requests 10000 --out reports/soak
    python -m benchmarks.soak --url http://127.0.0.1:8000 --pid 1234 --category demo
"""

import argparse
import asyncio
import contextlib
import gc
import io
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.cpus import usable_cpus
from benchmarks.measure import run
from benchmarks.servers import RunningServer, make_target, report_log_dir
from models.cae import CAEConfig
from models.calibration import Calibration
from models.checkpoint import save_checkpoint
from models.detector import AnomalyDetector, DetectorConfig
from models.scoring import ScoringConfig

CATEGORY = "soak"
OK, SHED = 200, 503


@dataclass(frozen=True)
class Outcome:
    """One request: when it was due to leave and when it ended (perf_counter), and how."""

    scheduled: float
    finished: float
    status: str  # "200", "503", ... or the client-side failure
    retry_after: bool = False

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.scheduled) * 1000

    @property
    def answered(self) -> bool:
        return self.status.isdigit()


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    array = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 2),
        "p99_ms": round(float(np.percentile(array, 99)), 2),
        "max_ms": round(float(array.max()), 2),
    }


@dataclass
class PhaseCount:
    """Every request of a phase, accounted for."""

    name: str
    sent: int
    answered: int
    lost: int  # sent but neither answered nor failed: must be 0
    statuses: dict[str, int]
    seconds: float
    ok_per_s: float
    ok_latency: dict[str, float | None]
    shed_latency: dict[str, float | None]
    shed_without_retry_after: int
    offered_per_s: float | None = None

    @property
    def unexpected(self) -> dict[str, int]:
        """Anything but 200 and 503: errors, timeouts, dropped connections."""
        return {status: n for status, n in self.statuses.items() if status not in (str(OK), str(SHED))}


def count(name: str, sent: int, results: Sequence[object], seconds: float, **extra) -> PhaseCount:
    """Account for ``sent`` requests from their ``results``; anything but an Outcome (an exception
    in the client) counts as lost."""
    outcomes = [r for r in results if isinstance(r, Outcome)]
    ok = [o.latency_ms for o in outcomes if o.status == str(OK)]
    shed = [o for o in outcomes if o.status == str(SHED)]
    return PhaseCount(
        name=name,
        sent=sent,
        answered=sum(o.answered for o in outcomes),
        lost=sent - len(outcomes),
        statuses=dict(Counter(o.status for o in outcomes)),
        seconds=round(seconds, 2),
        ok_per_s=round(len(ok) / seconds, 1) if seconds > 0 else 0.0,
        ok_latency=percentiles(ok),
        shed_latency=percentiles([o.latency_ms for o in shed]),
        shed_without_retry_after=sum(not o.retry_after for o in shed),
        **extra,
    )


def per_second(outcomes: Sequence[object], start: float) -> list[dict]:
    """Per second of scheduled time: requests, 200s, 503s and their p99 latency (ms)."""
    buckets: dict[int, list[Outcome]] = {}
    for outcome in outcomes:
        if isinstance(outcome, Outcome):
            buckets.setdefault(int(outcome.scheduled - start), []).append(outcome)
    rows = []
    for second, items in sorted(buckets.items()):
        ok = [o.latency_ms for o in items if o.status == str(OK)]
        shed = [o.latency_ms for o in items if o.status == str(SHED)]
        rows.append(
            {
                "second": second,
                "sent": len(items),
                "ok": len(ok),
                "shed": len(shed),
                "ok_p99_ms": percentiles(ok)["p99_ms"],
                "shed_p99_ms": percentiles(shed)["p99_ms"],
            }
        )
    return rows


# --- the workload --------------------------------------------------------------------------------


def tiny_checkpoint(folder: Path, category: str = CATEGORY) -> Path:
    """A 24 px two-block CAE with SSPCAB: milliseconds per pass, so HTTP, decode and encode dominate."""
    torch.manual_seed(0)
    cae = CAEConfig(
        input_size=24, in_channels=3, widths=(4, 8), pools=(2,), bottleneck_channels=8, sspcab=True
    )
    detector = AnomalyDetector(DetectorConfig(cae=cae, scoring=ScoringConfig(anomaly_map="l2"))).eval()
    calibration = Calibration(pixel_threshold=0.05, image_threshold=0.1, score_scale=0.02)
    return save_checkpoint(
        folder / f"{category}.safetensors", detector, category=category, calibration=calibration
    )


def small_pngs(count: int = 16, side: int = 64, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    pngs = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams, for load generation.

    On a small machine the load generator shares the CPU with the server; httpx spends about a
    millisecond of CPU per request, enough that at a few hundred requests per second the *client*
    falls behind its schedule and the measured latency is its own. This client writes prepared bytes
    and parses only the status line and headers: a few tens of microseconds per request.

    Args:
        host, port: the server.
        timeout_s: whole-request limit; past it the request is a "timeout".
    """

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send a complete request (head and body); returns (status, lower-cased headers, body)."""
        return await asyncio.wait_for(self._exchange(request), self.timeout_s)

    async def _exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        reused = bool(self._idle)
        reader, writer = self._idle.pop() if reused else await self._open()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            if not reused:
                raise
            return await self._exchange(request)  # a keep-alive connection the server had closed
        except BaseException:
            writer.close()
            raise
        try:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return int(status_line.split()[1]), headers, body

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def warm(self, connections: int) -> None:
        """Open connections up to ``connections`` idle ones, as cameras that hold theirs open."""
        missing = max(0, connections - len(self._idle))
        self._idle += await asyncio.gather(*(self._open() for _ in range(missing)))

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def png_request(path: str, host: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Load:
    """Sends the workload to ``path``: raw PNG bodies in turn, each request's bytes prepared once."""

    def __init__(self, client: RawHttp, path: str, pngs: Sequence[bytes]) -> None:
        self.client = client
        self.requests = [png_request(path, f"{client.host}:{client.port}", png) for png in pngs]
        self._next = itertools.count()

    async def one(self, scheduled: float | None = None) -> Outcome:
        scheduled = time.perf_counter() if scheduled is None else scheduled
        request = self.requests[next(self._next) % len(self.requests)]
        try:
            status, headers, _ = await self.client.post(request)
            outcome, retry = str(status), "retry-after" in headers
        except TimeoutError:
            outcome, retry = "timeout", False
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
            outcome, retry = type(err).__name__, False
        return Outcome(scheduled, time.perf_counter(), outcome, retry)


# --- memory ------------------------------------------------------------------------------------


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of ``pid`` in MiB (Linux ``/proc``), None when unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class MemoryWatch:
    pid: int | None
    interval_s: float
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MiB)
    marks: dict[str, float | None] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        start = time.perf_counter()
        while not stop.is_set():
            value = rss_mib(self.pid)
            if value is not None:
                self.samples.append((round(time.perf_counter() - start, 2), round(value, 1)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    def mark(self, name: str) -> None:
        value = rss_mib(self.pid)
        self.marks[name] = None if value is None else round(value, 1)

    def summary(self) -> dict:
        values = [mib for _, mib in self.samples]
        return {**self.marks, "peak_mib": max(values) if values else None, "samples": len(values)}


# --- the phases --------------------------------------------------------------------------------


async def baseline(load: Load, requests: int) -> PhaseCount:
    started = time.perf_counter()
    outcomes = [await load.one() for _ in range(requests)]
    return count("baseline", requests, outcomes, time.perf_counter() - started)


async def soak(load: Load, requests: int, concurrency: int, max_seconds: float) -> PhaseCount:
    """``requests`` at closed-loop ``concurrency``; no new request after ``max_seconds``."""
    outcomes: list[Outcome] = []
    sent = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def client() -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            with contextlib.suppress(Exception):  # a bug in the client: the request counts as lost
                outcomes.append(await load.one())

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return count("soak", sent, outcomes, time.perf_counter() - started)


async def overload(
    load: Load, rate: float, seconds: float, max_outstanding: int, seed: int = 0
) -> tuple[list[asyncio.Task], list[Outcome], float]:
    """Poisson arrivals at ``rate`` for ``seconds``; returns the requests still in flight, the ones the
    client's own limit kept back, and the ``perf_counter`` of the start of arrivals."""
    rng = random.Random(seed)
    tasks: list[asyncio.Task] = []
    overflow: list[Outcome] = []
    in_flight: set[asyncio.Task] = set()
    started = time.perf_counter()
    due, end = started, started + seconds
    while True:
        due += rng.expovariate(rate)
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_outstanding:
            overflow.append(Outcome(due, due, "client-overflow"))  # counted, never sent
            continue
        task = asyncio.create_task(load.one(due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        tasks.append(task)
    return tasks, overflow, started


@dataclass
class Recovery:
    first_ok_s: float | None  # from the last overload arrival to the first 200
    normal_s: float | None  # ... to the first 200 within the normal latency
    normal_limit_ms: float
    probes: int


async def recovery(load: Load, since: float, normal_limit_ms: float, max_seconds: float) -> Recovery:
    """One request after another until one is answered 200 within ``normal_limit_ms``."""
    first_ok = None
    probes = 0
    while time.perf_counter() - since < max_seconds:
        probes += 1
        outcome = await load.one()
        if outcome.status == str(OK):
            first_ok = first_ok if first_ok is not None else outcome.finished - since
            if outcome.latency_ms <= normal_limit_ms:
                return Recovery(
                    round(first_ok, 3), round(outcome.finished - since, 3), normal_limit_ms, probes
                )
        await asyncio.sleep(0.01)
    return Recovery(first_ok, None, normal_limit_ms, probes)


@dataclass
class SoakConfig:
    requests: int = 10_000
    concurrency: int = 64
    max_seconds: float = 120.0
    baseline: int = 50
    overload: float = 4.0  # × the sustainable rate
    overload_rate: float | None = None  # arrivals per s instead, for comparisons at a fixed load
    overload_seconds: float = 10.0
    max_outstanding: int = 2048
    warm_connections: int = 512  # opened before the overload: clients hold connections open
    recovered_factor: float = 2.0
    recovery_max_seconds: float = 30.0
    timeout_s: float = 30.0
    rss_interval_s: float = 0.25
    settle_s: float = 1.0  # before the last memory reading
    after_requests: int = 0  # a second soak after the recovery: same service, same memory?


async def run_soak(
    url: str, pid: int | None, category: str, pngs: Sequence[bytes], config: SoakConfig
) -> dict:
    """All four phases against the service at ``url``; returns the JSON-ready results."""
    parts = urllib.parse.urlsplit(url)
    watch = MemoryWatch(pid, config.rss_interval_s)
    stop = asyncio.Event()
    client = RawHttp(parts.hostname or "127.0.0.1", parts.port or 80, config.timeout_s)
    windows: dict[str, tuple[float, float]] = {}  # phase → (start, end), epoch seconds
    gc.collect()
    gc.disable()  # the client's own collections would stall it and show up as the server's latency
    try:
        load = Load(client, f"/inspect/{category}", pngs)
        watcher = asyncio.create_task(watch.run(stop))
        calm = await baseline(load, config.baseline)
        watch.mark("start_mib")
        began = time.time()
        steady = await soak(load, config.requests, config.concurrency, config.max_seconds)
        windows["soak"] = (began, time.time())
        watch.mark("after_soak_mib")
        sustainable = max(steady.ok_per_s, 1.0)
        rate = config.overload_rate or config.overload * sustainable
        await client.warm(min(config.max_outstanding, config.warm_connections))
        began = time.time()
        tasks, overflow, arrivals_start = await overload(
            load, rate, config.overload_seconds, config.max_outstanding
        )
        arrivals_end = arrivals_start + config.overload_seconds
        calm_p50 = calm.ok_latency["p50_ms"] or 0.0
        normal_ms = max(config.recovered_factor * calm_p50, calm_p50 + 20)
        # Recovery probes start as the arrivals stop, while the admitted requests drain.
        back, outcomes = await asyncio.gather(
            recovery(load, arrivals_end, normal_ms, config.recovery_max_seconds),
            asyncio.gather(*tasks, return_exceptions=True),
        )
        windows["overload"] = (began, time.time())
        watch.mark("after_overload_mib")
        every = list(outcomes) + overflow
        shed = count(
            "overload",
            len(every),
            every,
            config.overload_seconds,
            offered_per_s=round(len(every) / config.overload_seconds, 1),
        )
        timeline = per_second(every, arrivals_start)
        phases = [calm, steady, shed]
        if config.after_requests:
            again = await soak(load, config.after_requests, config.concurrency, config.max_seconds)
            again.name = "soak after"
            phases.append(again)
            watch.mark("after_second_soak_mib")
        await asyncio.sleep(config.settle_s)  # let the allocator settle before the last reading
        watch.mark("end_mib")
        stop.set()
        await watcher
    finally:
        client.close()
        gc.enable()
    return {
        "config": asdict(config),
        "sustainable_per_s": sustainable,
        "overload_rate_per_s": round(rate, 1),
        "phases": [{**asdict(p), "unexpected": p.unexpected} for p in phases],
        "overload_timeline": timeline,
        "recovery": asdict(back),
        "memory": watch.summary(),
        "rss_samples": watch.samples,
        "windows": windows,
    }


# --- report ------------------------------------------------------------------------------------


def machine() -> dict:
    try:
        load_average = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load_average = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": usable_cpus(),  # what the run could use: affinity, capped by a container quota
        "host_cpus": os.cpu_count(),
        "load_average": load_average,
        "torch": torch.__version__,
    }


def markdown(result: dict) -> str:
    lines = [
        f"# Soak and overload ({result['date']})",
        "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['load_average']} at start, {result['machine_after']['load_average']} at end. "
        f"Command: `{result['command']}`.",
        "",
        "| phase | sent | answered | lost | 200 | 503 (Retry-After) | other | 200 p50 / p99 / max ms "
        "| 503 p50 / p99 ms | seconds | 200/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        ok, shed = p["ok_latency"], p["shed_latency"]
        shed_count = p["statuses"].get("503", 0)
        lines.append(
            f"| {p['name']} | {p['sent']} | {p['answered']} | {p['lost']} | {p['statuses'].get('200', 0)} "
            f"| {shed_count} ({shed_count - p['shed_without_retry_after']}) | {p['unexpected'] or '-'} "
            f"| {ok['p50_ms']} / {ok['p99_ms']} / {ok['max_ms']} | {shed['p50_ms']} / {shed['p99_ms']} "
            f"| {p['seconds']} | {p['ok_per_s']} |"
        )
    server_side = result.get("server_side") or {}
    if server_side:
        lines += ["", "Latency the service logged itself (app arrival to end of answer), ms:", ""]
        for name, by_status in server_side.items():
            for status, figures in sorted(by_status.items()):
                lines.append(
                    f"- {name}, {status}: p50 {figures['p50_ms']}, p99 {figures['p99_ms']}, max {figures['max_ms']}"
                )
    memory, back = result["memory"], result["recovery"]
    lines += [
        "",
        f"Sustainable rate (soak throughput): {result['sustainable_per_s']}/s; overload offered "
        f"{result['overload_rate_per_s']}/s ({result['config']['overload']}×).",
        "",
        f"Resident memory (MiB): start {memory.get('start_mib')}, after soak {memory.get('after_soak_mib')}, "
        f"after overload {memory.get('after_overload_mib')}, "
        f"after the second soak {memory.get('after_second_soak_mib')}, end {memory.get('end_mib')}, "
        f"peak {memory.get('peak_mib')} ({memory.get('samples')} samples).",
        "",
        f"Recovery after the overload's last arrival: first 200 after {back['first_ok_s']} s, first 200 "
        f"within normal latency (≤ {back['normal_limit_ms']:.0f} ms) after {back['normal_s']} s "
        f"({back['probes']} probes).",
        "",
    ]
    if result.get("server_log"):
        lines += [f"The service's log: `{result['server_log']}`.", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running service; default: start one on loopback")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--weights-dir", type=Path, help="serve these checkpoints; default: a tiny one")
    parser.add_argument("--category", default=CATEGORY, help=f"URL category (default: {CATEGORY})")
    parser.add_argument("--requests", type=int, default=defaults.requests, help="soak requests")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="soak clients")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="soak time bound")
    parser.add_argument("--baseline", type=int, default=defaults.baseline, help="sequential calm requests")
    parser.add_argument("--overload", type=float, default=defaults.overload, help="× the sustainable rate")
    parser.add_argument("--overload-rate", type=float, help="arrivals per s instead of --overload ×")
    parser.add_argument("--overload-seconds", type=float, default=defaults.overload_seconds)
    parser.add_argument("--max-outstanding", type=int, default=defaults.max_outstanding)
    parser.add_argument(
        "--warm-connections", type=int, default=defaults.warm_connections, help="opened before the overload"
    )
    parser.add_argument("--recovered-factor", type=float, default=defaults.recovered_factor)
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="client timeout, s")
    parser.add_argument("--after-requests", type=int, default=0, help="a second soak after the recovery")
    parser.add_argument("--image-size", type=int, default=64, help="side of the PNGs sent")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="INSPECT_* setting")
    parser.add_argument(
        "--out", type=Path, default=Path("reports/soak"), help="folder for soak.json/.md and logs/"
    )
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> SoakConfig:
    return SoakConfig(
        requests=args.requests,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        baseline=args.baseline,
        overload=args.overload,
        overload_rate=args.overload_rate,
        overload_seconds=args.overload_seconds,
        max_outstanding=args.max_outstanding,
        warm_connections=args.warm_connections,
        recovered_factor=args.recovered_factor,
        timeout_s=args.timeout,
        after_requests=args.after_requests,
    )


def server_side_latency(log_path: Path, windows: dict[str, tuple[float, float]]) -> dict | None:
    """Per phase and status, p50/p99 of the latency the service logged itself (``app.access``: from
    the request's arrival in the app to the end of its answer), when its log is JSON lines."""
    found: dict[str, dict[str, list[float]]] = {name: {} for name in windows}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
            if entry.get("event") != "request":
                continue
            at = datetime.fromisoformat(entry["ts"]).timestamp()
            status, latency = str(entry["status"]), float(entry["latency_ms"])
        except (ValueError, KeyError, TypeError):
            continue
        for name, (start, end) in windows.items():
            if start <= at <= end:
                found[name].setdefault(status, []).append(latency)
    if not any(found.values()):
        return None
    return {
        name: {status: percentiles(values) for status, values in by.items()} for name, by in found.items()
    }


def soak_service(
    config: SoakConfig,
    weights_dir: Path | None = None,
    env: dict[str, str] | None = None,
    image_size: int = 64,
    category: str = CATEGORY,
    log_dir: Path | None = None,
) -> dict:
    """Start the service on loopback (a tiny checkpoint unless ``weights_dir``), soak it, stop it.

    The server logs into ``log_dir``, where its log outlives the soak (``server_log`` in the result
    names it); without one, into the soak's temporary folder, removed with it."""
    with tempfile.TemporaryDirectory(prefix="soak-weights-") as tmp:
        checkpoint = (
            next(Path(weights_dir).glob(f"{category}.safetensors"))
            if weights_dir
            else tiny_checkpoint(Path(tmp))
        )
        service_env = {
            "INSPECT_CODEC_WORKERS": "2",
            "INSPECT_TORCH_THREADS": "1",
            "INSPECT_LOG_FORMAT": "json",  # server_side_latency reads its access log
            **(env or {}),
        }
        target = make_target("service", checkpoint, service_env=service_env)
        with RunningServer(target, log_dir=log_dir or Path(tmp)) as server:
            if log_dir:
                print(f"  service logs to {server.log_path}", file=sys.stderr)
            result = run(run_soak(server.url, server.pid, category, small_pngs(side=image_size), config))
            result["server_alive"] = server.process is not None and server.process.poll() is None
            result["server_side"] = server_side_latency(server.log_path, result["windows"])
            result["server_env"] = service_env
            result["server_log"] = str(server.log_path) if log_dir else None
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = config_of(args)
    env = dict(item.split("=", 1) for item in args.env)
    started = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    if args.url:
        result = run(run_soak(args.url, args.pid, args.category, small_pngs(side=args.image_size), config))
    else:
        logs = report_log_dir(args.out, "soak")  # the server's log, kept beside the report it explains
        result = soak_service(config, args.weights_dir, env, args.image_size, args.category, logs)
    result = {
        **started,
        **result,
        "machine_after": machine(),
        "command": "python -m benchmarks.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    (args.out / "soak.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
