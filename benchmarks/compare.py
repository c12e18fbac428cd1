"""This service against itself without batching and against its peers, in alternating rounds.

Each round starts, loads and stops every target in turn (``service``, ``service-bs1``, ``naive``,
``litserve`` by default: A B C D A B C D ...) with the same images and phases, so slow drifts of a
shared machine (other jobs, thermal state) hit every target alike instead of favouring whichever ran
first. The summary gives, per phase and target, the median over rounds with the range, and the
ratio of this service's median throughput to each peer's, with the range of the per-round ratios.

    python -m benchmarks.compare --rounds 3 --concurrency 1 32 --duration 5
"""

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.measure import PhaseResult
from benchmarks.serve_load import (
    add_workload_arguments,
    build_requests,
    check_floor,
    checkpoint_path,
    fmt,
    load_images,
    machine_state,
    markdown_table,
    measure_target,
    read_floor,
    validate,
    write_outputs,
)
from benchmarks.servers import DEFAULT_TARGETS, TARGETS, report_log_dir

REFERENCE = "service"


def spread(values: list[float], digits: int = 1) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}" if len(values) > 1 else "–"


def median_of(results: list[PhaseResult], name: str) -> float | None:
    values = [getattr(r, name) for r in results if getattr(r, name) is not None]
    return statistics.median(values) if values else None


def summary(by_target: dict[str, dict[str, list[PhaseResult]]], floor: dict | None) -> tuple[str, list[dict]]:
    """Markdown and rows: per phase, per target, medians over rounds and ratios to the reference."""
    head = (
        "| phase | target | images/s median (range) | p50 ms | p99 ms | mean batch | server CPU ms/image "
        f"| {REFERENCE} ÷ target (range) |"
    )
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if floor:
        head, rule = head + " % of floor |", rule + "---:|"
    lines = [head, rule]
    rows = []
    labels = list(dict.fromkeys(label for phases in by_target.values() for label in phases))
    reference = by_target.get(REFERENCE, {})
    for label in labels:
        for target, phases in by_target.items():
            results = phases.get(label, [])
            if not results:
                continue
            throughput = [r.images_per_s for r in results]
            row: dict[str, Any] = {
                "phase": label,
                "target": target,
                "rounds": len(results),
                "images_per_s": [round(x, 2) for x in throughput],
                "images_per_s_median": round(statistics.median(throughput), 2),
                **{f"{k}_median": median_of(results, k) for k in ("p50_ms", "p99_ms", "mean_batch_size")},
                "server_cpu_ms_per_image_median": median_of(results, "server_cpu_ms_per_image"),
                "errors": [r.errors for r in results],
            }
            ratio_text = "1"
            ref = reference.get(label, [])
            if target != REFERENCE and ref:
                paired = [
                    a.images_per_s / b.images_per_s
                    for a, b in zip(ref, results, strict=False)
                    if b.images_per_s
                ]
                ref_median = statistics.median(r.images_per_s for r in ref)
                if row["images_per_s_median"]:
                    row["ratio_of_medians"] = round(ref_median / row["images_per_s_median"], 2)
                    row["ratio_per_round"] = [round(x, 2) for x in paired]
                    ratio_text = f"{row['ratio_of_medians']:.2f}× ({spread(paired, 2)})"
                else:
                    ratio_text = "∞"
            if floor:
                row["share_of_floor"] = round(row["images_per_s_median"] / floor["images_per_s"], 3)
            rows.append(row)
            lines.append(
                f"| {label} | {target} | {row['images_per_s_median']:.1f} ({spread(throughput)}) "
                f"| {fmt(row['p50_ms_median'])} | {fmt(row['p99_ms_median'])} | {fmt(row['mean_batch_size_median'], 2)} "
                f"| {fmt(row['server_cpu_ms_per_image_median'])} | {ratio_text} |"
                + (f" {100 * row['share_of_floor']:.0f} % |" if floor else "")
            )
    return "\n".join(lines) + "\n", rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        nargs="+",
        default=list(DEFAULT_TARGETS),
        choices=TARGETS,
        help=f"in round order (default: {' '.join(DEFAULT_TARGETS)})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every target (default: 3)")
    add_workload_arguments(parser)
    args = parser.parse_args(argv)
    validate(args)
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    checkpoint = checkpoint_path(args)
    images = load_images(args)
    requests = build_requests(args, images)
    floor = read_floor(args.floor)
    check_floor(floor, checkpoint, images)
    state = machine_state()
    print(
        f"compare {args.targets} × {args.rounds} rounds: {images.describe()}; load {state['load_average']}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    by_target: dict[str, dict[str, list[PhaseResult]]] = defaultdict(lambda: defaultdict(list))
    every_run, checks, failures = [], {}, []
    logs = report_log_dir(args.out, "compare")  # every round's server logs, beside the report they explain
    for round_index in range(args.rounds):
        for target in args.targets:
            try:
                check, results = measure_target(args, target, requests, checkpoint, logs)
            except RuntimeError as err:  # one target that fails to start or answer spoils only its runs
                print(f"  {target} round {round_index + 1} failed: {err}", file=sys.stderr)
                failures.append({"target": target, "round": round_index + 1, "error": str(err)[-2000:]})
                continue
            checks[target] = check
            for r in results:
                by_target[target][r.label].append(r)
                every_run.append((f"{target} #{round_index + 1}", r))
    markdown, rows = summary(by_target, floor)
    load_after = [round(x, 2) for x in os.getloadavg()]
    markdown += f"\n{args.rounds} rounds; load average before {state['load_average']}, after {load_after}\n"
    document = {
        "machine": {**state, "load_average_after": load_after},
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "checkpoint": str(checkpoint),
        "images": images.describe(),
        "first_answers": checks,
        "floor": floor,
        "summary": rows,
        "failures": failures,
        "runs": [{"run": name, **r.to_dict()} for name, r in every_run],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(markdown)
    write_outputs(
        args.out, "compare", markdown + "\n## Every run\n\n" + markdown_table(every_run, floor), document
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
