"""Load generator for the inspection service: throughput, latency percentiles, errors, batch sizes.

Starts the service itself (``uvicorn app.main:app`` on a free loopback port, with the given
``INSPECT_*`` settings; it waits for ``/readyz`` and stops it afterwards), or a peer
(``--target naive|litserve``), or loads a running one (``--url``). It sends the synthetic demo
category resized to a camera-like size (default), or the test images of any MVTec-layout folder
(``--data DIR/CATEGORY``), in closed loop at each ``--concurrency`` and in open loop at each
``--rates`` arrival rate (see ``benchmarks.measure``), and writes a Markdown table and a JSON file.

    python -m benchmarks.serve_load --concurrency 1 8 32 64 --duration 10 --rates 20 40
    python -m benchmarks.serve_load --url http://127.0.0.1:8000 --category demo
    python -m benchmarks.serve_load --floor reports/bench/floor.json   # adds "% of floor"

Alternating rounds of this service and its peers: ``python -m benchmarks.compare``.
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from app.cpus import usable_cpus
from benchmarks.images import ImageSet, folder_images, synthetic_images
from benchmarks.measure import PhaseResult, multipart_requests, raw_requests, run, run_phases
from benchmarks.servers import TARGETS, RunningServer, make_target, report_log_dir

QUICK_WEIGHTS = (
    "python -m training synth --out /tmp/bsynth --category demo --n-train 40 && "
    "python -m training fit --data-root /tmp/bsynth --category demo --epochs 2 "
    "--out /tmp/bw/demo.safetensors --no-progress"
)


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by serve_load and compare: the model, the images, the phases."""
    parser.add_argument(
        "--weights-dir", type=Path, default=Path("weights"), help="holds <category>.safetensors"
    )
    parser.add_argument("--category", default="demo", help="checkpoint stem and URL category (default: demo)")
    parser.add_argument("--device", default="cpu", help="device of the started services (default: cpu)")
    parser.add_argument(
        "--data", type=Path, help="an MVTec-layout category folder; default: synthetic images"
    )
    parser.add_argument("--images", type=int, default=64, help="distinct images sent in turn (default: 64)")
    parser.add_argument(
        "--image-size",
        type=int,
        help="longer side the images are resized to; default 512 for synthetic images, native for --data; 0: native",
    )
    parser.add_argument("--body", choices=("multipart", "raw"), default="multipart", help="request encoding")
    parser.add_argument(
        "--include", default="mask,overlay", help="the service's include= query (default: mask,overlay)"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="*", default=[1, 8, 32, 64], help="closed-loop clients"
    )
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[], help="open-loop Poisson arrival rates, per s"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per phase (default: 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each phase (default: 3)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, s")
    parser.add_argument("--max-outstanding", type=int, default=512, help="open loop: most requests in flight")
    parser.add_argument("--max-batch-size", type=int, default=16, help="service and LitServe batch limit")
    parser.add_argument(
        "--max-batch-wait-ms", type=float, default=5.0, help="service and LitServe batch wait"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra INSPECT_* setting"
    )
    parser.add_argument("--floor", type=Path, help="floor.py's JSON: show throughput as a share of the floor")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/bench"),
        help="folder for the .md and .json, and the started servers' logs (in logs/<report>/)",
    )


def validate(args: argparse.Namespace) -> None:
    """Fail early with the flag at fault."""
    if any(c < 1 for c in args.concurrency):
        raise SystemExit(f"--concurrency values must be >= 1, got {args.concurrency}")
    if any(r <= 0 for r in args.rates):
        raise SystemExit(f"--rates values must be > 0, got {args.rates}")
    if not args.concurrency and not args.rates:
        raise SystemExit("nothing to measure: give --concurrency or --rates")
    if args.images < 1 or args.max_batch_size < 1 or args.max_outstanding < 1:
        raise SystemExit("--images, --max-batch-size and --max-outstanding must be >= 1")
    if args.duration <= 0 or args.warmup < 0:
        raise SystemExit("--duration must be > 0 and --warmup >= 0")
    for item in args.env:
        if "=" not in item:
            raise SystemExit(f"--env takes KEY=VALUE, got {item!r}")


def checkpoint_path(args: argparse.Namespace) -> Path:
    path = args.weights_dir / f"{args.category}.safetensors"
    if not path.is_file():
        raise SystemExit(
            f"no checkpoint {path}: pass --weights-dir and --category, or train a quick one:\n  {QUICK_WEIGHTS}\n"
            "and pass --weights-dir /tmp/bw"
        )
    return path


def load_images(args: argparse.Namespace) -> ImageSet:
    side = None if args.image_size == 0 else args.image_size
    if args.data:
        return folder_images(args.data, args.images, side)
    return synthetic_images(
        args.category, args.images, 512 if side is None and args.image_size is None else side
    )


def build_requests(args: argparse.Namespace, images: ImageSet):
    return multipart_requests(images.pngs) if args.body == "multipart" else raw_requests(images.pngs)


def inspect_path(args: argparse.Namespace) -> str:
    return f"/inspect/{args.category}?include={args.include}"


def service_env(args: argparse.Namespace) -> dict[str, str]:
    return dict(item.split("=", 1) for item in args.env)


def read_floor(path: Path | None) -> dict | None:
    if path is None:
        return None
    floor = json.loads(path.read_text())
    return {"images_per_s": floor["floor"]["images_per_s"], "source": str(path), **floor.get("workload", {})}


def check_floor(floor: dict | None, checkpoint: Path | None, images: ImageSet) -> None:
    """Warn when the floor was measured on another checkpoint or other images than this run's."""
    if floor is None:
        return
    differences = []
    if (
        checkpoint is not None
        and floor.get("checkpoint")
        and Path(floor["checkpoint"]).resolve() != checkpoint.resolve()
    ):
        differences.append(f"checkpoint {floor['checkpoint']}")
    measured = floor.get("images", {})
    if measured.get("widths") != images.describe()["widths"] or measured.get("source") != images.source:
        differences.append(f"images {measured.get('source')!r}, widths {measured.get('widths')}")
    if differences:
        print(
            f"warning: the floor was measured on {'; '.join(differences)}: its share is indicative only",
            file=sys.stderr,
        )


def machine_state() -> dict:
    """What else shaped the numbers: cores, load, the server's event loop and HTTP parser."""

    def importable(name: str) -> bool:
        try:
            __import__(name)
            return True
        except ImportError:
            return False

    loop = "uvloop" if importable("uvloop") else "asyncio"
    http = "httptools" if importable("httptools") else "h11"
    return {
        "cpus": usable_cpus(),  # what the run could use: affinity, capped by a container quota
        "host_cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "uvicorn_loop_http": f"{loop}+{http} (uvicorn 'auto' picks these)",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def fmt(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[tuple[str, PhaseResult]], floor: dict | None) -> str:
    """One line per (target, phase)."""
    head = (
        "| target | phase | images/s | p50 ms | p95 ms | p99 ms | errors | mean batch | server CPU ms/image |"
    )
    rule = "|---|---|---:|---:|---:|---:|---|---:|---:|"
    if floor:
        head += " % of floor |"
        rule += "---:|"
    lines = [head, rule]
    for target, r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) or "0"
        label = r.label if r.offered_per_s is None else f"{r.label} (offered {r.offered_per_s:.1f}/s)"
        line = (
            f"| {target} | {label} | {r.images_per_s:.1f} | {fmt(r.p50_ms)} | {fmt(r.p95_ms)} | {fmt(r.p99_ms)} "
            f"| {errors} | {fmt(r.mean_batch_size, 2)} | {fmt(r.server_cpu_ms_per_image)} |"
        )
        if floor:
            line += f" {100 * r.images_per_s / floor['images_per_s']:.0f} % |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def print_phase(target: str):
    def show(r: PhaseResult) -> None:
        print(
            f"  {target:12s} {r.label:14s} {r.images_per_s:7.1f} img/s  p50 {fmt(r.p50_ms):>7s} ms  "
            f"p99 {fmt(r.p99_ms):>7s} ms  errors {r.errors or 0}  batch {fmt(r.mean_batch_size, 2)}",
            file=sys.stderr,
            flush=True,
        )

    return show


def write_outputs(out: Path, stem: str, markdown: str, document: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(markdown)
    (out / f"{stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {out / stem}.md and .json", file=sys.stderr)


def measure_target(
    args: argparse.Namespace, name: str, requests, checkpoint: Path | None, log_dir: Path | None = None
) -> tuple[dict, list]:
    """Start ``name`` (or use --url), run every phase, stop it; returns (check, phases). A started
    server logs into ``log_dir`` (the system's temporary folder unless given)."""
    phases = {
        "concurrencies": args.concurrency,
        "rates": args.rates,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "timeout_s": args.timeout,
        "max_outstanding": args.max_outstanding,
        "on_phase": print_phase(name),
    }
    if getattr(args, "url", None):
        return run(run_phases(args.url.rstrip("/"), inspect_path(args), requests, **phases))
    assert checkpoint is not None, "a started target needs a checkpoint"
    target = make_target(
        name, checkpoint, args.device, service_env(args), args.max_batch_size, args.max_batch_wait_ms
    )
    with RunningServer(target, log_dir=log_dir) as server:
        print(f"  {name} logs to {server.log_path}", file=sys.stderr)
        return run(run_phases(server.url, inspect_path(args), requests, server_pid=server.pid, **phases))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--url", help="load this running service instead of starting one")
    parser.add_argument(
        "--target", default="service", choices=TARGETS, help="what to start (default: service)"
    )
    add_workload_arguments(parser)
    args = parser.parse_args(argv)
    validate(args)
    checkpoint = None if args.url else checkpoint_path(args)
    images = load_images(args)
    requests = build_requests(args, images)
    floor = read_floor(args.floor)
    check_floor(floor, checkpoint, images)
    state = machine_state()
    name = "external" if args.url else args.target
    print(f"{name}: {images.describe()}; load {state['load_average']}", file=sys.stderr)
    started = time.perf_counter()
    logs = None if args.url else report_log_dir(args.out, "serve_load")  # beside the report it explains
    check, results = measure_target(args, name, requests, checkpoint, logs)
    rows = [(name, r) for r in results]
    document = {
        "machine": {**state, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "checkpoint": str(checkpoint) if checkpoint else None,
        "images": images.describe(),
        "first_answer": check,
        "floor": floor,
        "target": name,
        "phases": [r.to_dict() for r in results],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    markdown = markdown_table(rows, floor)
    print(markdown)
    write_outputs(args.out, "serve_load", markdown, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
