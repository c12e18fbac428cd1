"""The services under test: how to start each one on a free loopback port, wait for it, and stop it.

Every target answers the same request (``POST /inspect/<category>`` with a multipart part named
``file``, JSON with scores, a mask PNG and an overlay PNG per image):

- ``service``: this project's service (``uvicorn app.main:app``), as ``make serve`` runs it;
- ``service-bs1``: the same with ``INSPECT_MAX_BATCH_SIZE=1``, i.e. without dynamic batching;
- ``service-bf16``: the same with ``INSPECT_PRECISION=bfloat16`` (only where bfloat16 is native, so
  it is named, not run by default: ``--targets service service-bf16``);
- ``naive``: ``benchmarks/naive_service.py``, the first FastAPI service a practitioner would write;
- ``litserve``: ``benchmarks/litserve_service.py``, the same job on LitServe with its own batching.

Each runs as a child process in its own process group, logging to a file, bound to 127.0.0.1 only.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_TARGETS = ("service", "service-bs1", "naive", "litserve")
TARGETS = (*DEFAULT_TARGETS, "service-bf16")
LOG_PREFIX = "bench-"  # a started server's log file: bench-<target>-<random>.log
SERVICE_VARIANTS = {  # each variant of this service: its settings over the common ones
    "service": {},
    "service-bs1": {"INSPECT_MAX_BATCH_SIZE": "1"},
    "service-bf16": {"INSPECT_PRECISION": "bfloat16"},
}


@dataclass(frozen=True)
class Target:
    """A service to start.

    Args:
        name: one of TARGETS, or "external" for a --url.
        command: argv; ``{port}`` is replaced by the chosen port.
        env: environment variables added to this process's.
        ready_path: GET path that answers 200 once the models serve.
    """

    name: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def report_log_dir(out: Path, report: str) -> Path:
    """``out``/logs/``report``, for the logs of the servers a run starts, emptied of the ones the
    previous run of that report left there: the logs beside a report are those that explain it,
    and runs repeated into one folder do not pile them up. Other reports' logs in ``out`` and files
    other than server logs are left alone."""
    logs = out / "logs" / report
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob(f"{LOG_PREFIX}*.log"):
        old.unlink(missing_ok=True)
    return logs


def make_target(
    name: str,
    checkpoint: Path,
    device: str = "cpu",
    service_env: dict[str, str] | None = None,
    max_batch_size: int = 16,
    max_batch_wait_ms: float = 5.0,
) -> Target:
    """The Target called ``name`` serving ``checkpoint`` (its file stem is the category)."""
    python = sys.executable
    if name in SERVICE_VARIANTS:
        env = {
            "INSPECT_WEIGHTS_DIR": str(checkpoint.parent),
            "INSPECT_DEVICE": device,
            "INSPECT_MAX_BATCH_SIZE": str(max_batch_size),
            "INSPECT_MAX_BATCH_WAIT_MS": str(max_batch_wait_ms),
            **(service_env or {}),
            **SERVICE_VARIANTS[name],
        }
        command = (python, "-m", "uvicorn", "app.main:app", "--host", HOST, "--port", "{port}")
        return Target(name, (*command, "--log-level", "warning", "--no-access-log"), env)
    common = ("--checkpoint", str(checkpoint), "--port", "{port}", "--device", device)
    if name == "naive":
        return Target(name, (python, "-m", "benchmarks.naive_service", *common))
    if name == "litserve":
        batching = ("--max-batch-size", str(max_batch_size), "--batch-timeout-ms", str(max_batch_wait_ms))
        return Target(
            name, (python, "-m", "benchmarks.litserve_service", *common, *batching), ready_path="/health"
        )
    raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {name!r}")


class RunningServer:
    """A started target; use as a context manager. ``url`` is its base URL, ``pid`` its process.

    Its output goes to ``log_path``, a file in ``log_dir`` (the system's temporary folder unless
    given) that outlives the server so that a failure can still be read; a caller that cleans up
    after itself passes a folder it removes."""

    def __init__(self, target: Target, ready_timeout_s: float = 180.0, log_dir: Path | None = None) -> None:
        self.target = target
        self.ready_timeout_s = ready_timeout_s
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        fd, log_path = tempfile.mkstemp(prefix=f"{LOG_PREFIX}{target.name}-", suffix=".log", dir=log_dir)
        os.close(fd)  # __enter__ opens it by name for the child
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> "RunningServer":
        command = [part.replace("{port}", str(self.port)) for part in self.target.command]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, **self.target.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends its children too
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self.process is not None, "start the server first"
        deadline = time.monotonic() + self.ready_timeout_s
        url = self.url + self.target.ready_path
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.target.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"{self.target.name} not ready at {url} after {self.ready_timeout_s:g} s:\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session made it the group leader
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def process_tree_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` and its live descendants (Linux /proc); None elsewhere."""
    if pid is None or not Path("/proc").is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid → (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    if pid not in stats:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in stats.items() if ppid == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[p][1] for p in tree)
