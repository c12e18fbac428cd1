"""Load phases against one running service: closed loop at a fixed concurrency, open loop at a Poisson rate.

- Closed loop: ``concurrency`` clients, each sending its next image as soon as its last answer
  arrived. Throughput is what the service sustains with that many requests in flight.
- Open loop: requests arrive as a Poisson process at ``rate`` per second, whatever the service does
  (as independent cameras would); latency counts from the scheduled arrival, so a slow service
  is not flattered by a client that waits for it (no coordinated omission).

Each phase first runs ``warmup_s`` of the same load, unmeasured, then ``duration_s`` measured: a
request counts when it completes inside the measured window (open loop: when it was scheduled
inside it). In-flight requests are let finish before the next phase, so phases do not overlap.
Around the window the phase reads the service's ``/metrics`` (mean ``inspect_batch_size``, when the
endpoint exists) and the CPU time of the server's processes.
"""

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field

import httpx
import numpy as np

from benchmarks.servers import process_tree_cpu_s

BATCH_METRIC = "inspect_batch_size"


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Sample:
    scheduled: float  # perf_counter when the request was due to leave (closed loop: when it left)
    finished: float
    status: str  # HTTP status code, or the client-side failure ("timeout", "ConnectError", ...)


@dataclass
class PhaseResult:
    """One measured phase; latencies in ms over the successful (2xx) answers."""

    mode: str  # "closed" or "open"
    concurrency: int | None
    rate: float | None
    duration_s: float
    completed: int
    ok: int
    images_per_s: float
    offered_per_s: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)
    mean_batch_size: float | None = None
    server_cpu_ms_per_image: float | None = None
    client_cpu_s: float | None = None

    @property
    def label(self) -> str:
        return f"closed c={self.concurrency}" if self.mode == "closed" else f"open {self.rate:g}/s"

    def to_dict(self) -> dict:
        return {"label": self.label, **asdict(self)}


def multipart_requests(pngs: Sequence[bytes], boundary: str = "sspcab-bench-7f3a9c") -> list[Request]:
    """One multipart/form-data body per image, its single part named ``file`` (built once, sent as is)."""
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    out = []
    for i, png in enumerate(pngs):
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i:03d}.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        out.append(Request(head + png + f"\r\n--{boundary}--\r\n".encode(), headers))
    return out


def raw_requests(pngs: Sequence[bytes]) -> list[Request]:
    """The image itself as the body, Content-Type image/png."""
    return [Request(png, {"content-type": "image/png"}) for png in pngs]


async def send(client: httpx.AsyncClient, path: str, request: Request, scheduled: float) -> Sample:
    try:
        response = await client.post(path, content=request.body, headers=request.headers)
        status = str(response.status_code)
    except httpx.TimeoutException:
        status = "timeout"
    except httpx.TransportError as err:
        status = type(err).__name__
    return Sample(scheduled, time.perf_counter(), status)


def sample_value(line: str) -> float:
    """The value of one exposition line ``name{labels} value [timestamp]``."""
    rest = line[line.rindex("}") + 1 :] if "}" in line else line.split(None, 1)[1]
    return float(rest.split()[0])


def parse_batch_metric(text: str) -> tuple[float, float] | None:
    """(sum, count) of the ``inspect_batch_size`` histogram over all label sets, or None if absent."""
    total, count, seen = 0.0, 0.0, False
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == f"{BATCH_METRIC}_sum":
            total += sample_value(line)
            seen = True
        elif name == f"{BATCH_METRIC}_count":
            count += sample_value(line)
    return (total, count) if seen else None


async def scrape_batches(client: httpx.AsyncClient) -> tuple[float, float] | None:
    try:
        response = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    return parse_batch_metric(response.text) if response.status_code == 200 else None


class Probe:
    """Counters read at both ends of a measured window: batch histogram, server CPU, client CPU."""

    def __init__(self, client: httpx.AsyncClient, server_pid: int | None) -> None:
        self.client = client
        self.server_pid = server_pid

    async def read(self) -> tuple:
        return (await scrape_batches(self.client), process_tree_cpu_s(self.server_pid), time.process_time())

    @staticmethod
    def deltas(before: tuple, after: tuple, ok: int) -> dict:
        (b0, s0, c0), (b1, s1, c1) = before, after
        batch = None
        if b0 is not None and b1 is not None and b1[1] > b0[1]:
            batch = (b1[0] - b0[0]) / (b1[1] - b0[1])
        server = (s1 - s0) * 1000 / ok if s0 is not None and s1 is not None and ok else None
        return {"mean_batch_size": batch, "server_cpu_ms_per_image": server, "client_cpu_s": c1 - c0}


def summarise(
    samples: Sequence[Sample], mode: str, duration_s: float, counters: dict, **where
) -> PhaseResult:
    ok = [s for s in samples if s.status.startswith("2")]
    latencies = np.array([(s.finished - s.scheduled) * 1000 for s in ok])
    pct = (lambda q: round(float(np.percentile(latencies, q)), 2)) if len(ok) else (lambda q: None)
    return PhaseResult(
        mode=mode,
        concurrency=where.get("concurrency"),
        rate=where.get("rate"),
        duration_s=duration_s,
        completed=len(samples),
        ok=len(ok),
        images_per_s=round(len(ok) / duration_s, 2),
        offered_per_s=where.get("offered_per_s"),
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        mean_ms=round(float(latencies.mean()), 2) if len(ok) else None,
        errors=dict(Counter(s.status for s in samples if not s.status.startswith("2"))),
        **counters,
    )


async def measured_window(probe: Probe, warmup_s: float, duration_s: float) -> tuple[float, float, dict]:
    """Sleep through the warm-up, read the counters, sleep through the window, read them again."""
    await asyncio.sleep(warmup_s)
    start, before = time.perf_counter(), await probe.read()
    await asyncio.sleep(duration_s)
    end, after = time.perf_counter(), await probe.read()
    return start, end, {"before": before, "after": after}


async def closed_loop(
    client: httpx.AsyncClient,
    path: str,
    requests: Sequence[Request],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    probe: Probe,
) -> PhaseResult:
    samples: list[Sample] = []
    order = itertools.count()
    stop = asyncio.Event()

    async def client_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            samples.append(await send(client, path, requests[next(order) % len(requests)], started))

    workers = [asyncio.create_task(client_loop()) for _ in range(concurrency)]
    start, end, reads = await measured_window(probe, warmup_s, duration_s)
    stop.set()
    await asyncio.gather(*workers)  # let in-flight requests finish, uncounted
    inside = [s for s in samples if start <= s.finished <= end]
    ok = sum(s.status.startswith("2") for s in inside)
    counters = Probe.deltas(reads["before"], reads["after"], ok)
    return summarise(inside, "closed", end - start, counters, concurrency=concurrency)


async def open_loop(
    client: httpx.AsyncClient,
    path: str,
    requests: Sequence[Request],
    rate: float,
    warmup_s: float,
    duration_s: float,
    probe: Probe,
    max_outstanding: int = 512,
    seed: int = 0,
) -> PhaseResult:
    rng = random.Random(seed)
    samples: list[Sample] = []
    tasks: set[asyncio.Task] = set()  # in flight
    sent: list[asyncio.Task] = []
    window = asyncio.create_task(measured_window(probe, warmup_s, duration_s))
    due, end_of_arrivals = time.perf_counter(), time.perf_counter() + warmup_s + duration_s
    for i in itertools.count():
        due += rng.expovariate(rate)
        if due >= end_of_arrivals:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_outstanding:  # the client's own limit: counted, never sent
            samples.append(Sample(due, due, "client-overflow"))
            continue
        task = asyncio.create_task(send(client, path, requests[i % len(requests)], due))
        task.add_done_callback(tasks.discard)
        tasks.add(task)
        sent.append(task)
    start, end, reads = await window
    if sent:
        await asyncio.wait(sent)
    samples += [task.result() for task in sent]
    inside = [s for s in samples if start <= s.scheduled <= end]
    ok_done = sum(s.status.startswith("2") and start <= s.finished <= end for s in samples)
    counters = Probe.deltas(reads["before"], reads["after"], ok_done)
    result = summarise(
        inside, "open", end - start, counters, rate=rate, offered_per_s=round(len(inside) / (end - start), 2)
    )
    result.images_per_s = round(ok_done / (end - start), 2)  # completions inside the window
    return result


def make_client(url: str, connections: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(timeout_s))


async def check_answer(client: httpx.AsyncClient, path: str, request: Request) -> dict:
    """One request before any phase: fail early, with the answer, if the service does not do the job."""
    response = await client.post(path, content=request.body, headers=request.headers)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    result = response.json()["results"][0]
    missing = [k for k in ("score", "is_anomalous", "mask_png", "overlay_png") if k not in result]
    if missing:
        raise RuntimeError(f"POST {path} answered without {', '.join(missing)}: {response.text[:300]}")
    return {"response_kib": round(len(response.content) / 1024, 1), "score": result["score"]}


async def run_phases(
    url: str,
    path: str,
    requests: Sequence[Request],
    *,
    concurrencies: Sequence[int],
    rates: Sequence[float],
    warmup_s: float,
    duration_s: float,
    timeout_s: float = 60.0,
    max_outstanding: int = 512,
    server_pid: int | None = None,
    on_phase: Callable[[PhaseResult], None] | None = None,
) -> tuple[dict, list[PhaseResult]]:
    """Check one answer, then run the closed-loop phases, then the open-loop ones; returns (check, results)."""
    connections = max([*concurrencies, max_outstanding if rates else 1, 1])
    results = []
    # The probe has its own connection, so reading /metrics never waits behind the load.
    async with make_client(url, connections, timeout_s) as client, make_client(url, 1, timeout_s) as side:
        check = await check_answer(client, path, requests[0])
        probe = Probe(side, server_pid)
        for concurrency in concurrencies:
            results.append(
                await closed_loop(client, path, requests, concurrency, warmup_s, duration_s, probe)
            )
            if on_phase:
                on_phase(results[-1])
        for rate in rates:
            phase = await open_loop(
                client, path, requests, rate, warmup_s, duration_s, probe, max_outstanding=max_outstanding
            )
            results.append(phase)
            if on_phase:
                on_phase(phase)
    return check, results


def run(coroutine: Coroutine):
    """asyncio.run on uvloop when it is installed (a cheaper client), else on the default loop."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)
