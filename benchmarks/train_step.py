"""What one training step of the default preset costs, in each numeric format ``fit`` can use.

A step is what ``training.fit.fit`` does per batch: synthetic anomalies, the autoencoder and the
head forward (``training_loss``), backward, Adam. The formats, timed in alternating rounds so that a
machine's drift hits each alike, and reported as the median ms per step and its ratio to the first:

- ``float32``: float32, default (contiguous) memory layout — how ``fit`` trains on the CPU by
  default (``--precision auto``);
- ``float32 channels-last``: oneDNN's and cuDNN's preferred layout, which ``fit`` keeps off the
  CPU's float32 because it changes the rounding that published figures were measured with;
- ``bfloat16 channels-last``: bfloat16 autocast as well — ``fit``'s default on CUDA, and
  ``--precision bfloat16`` on CPUs with AMX or AVX512-BF16 (``models.precision.native_bfloat16``);
  elsewhere a CPU emulates it, and this row shows what that would cost.

Each row also gives the steps of ``fit``'s default budget in its precision (1 200 in float32, 4 800
in bfloat16: ``training.config.DEFAULT_MAX_STEPS``) and the minutes those steps alone take here.

    python -m benchmarks.train_step                      # RGB, batch 16, all threads
    python -m benchmarks.train_step --channels 1 --threads 1 --rounds 7
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.detector import AnomalyDetector
from models.precision import native_bfloat16
from training.config import DEFAULT_MAX_STEPS, preset
from training.fit import resolve_device, training_loss

FORMATS = {  # name: (bfloat16 autocast, channels-last)
    "float32": (False, False),
    "float32 channels-last": (False, True),
    "bfloat16 channels-last": (True, True),
}


def step_ms(
    detector: AnomalyDetector, batch: torch.Tensor, amp: bool, steps: int, rng: np.random.Generator
) -> float:
    """Median wall time of ``steps`` training steps, in ms (after one unmeasured step)."""
    config = preset("default", channels=batch.shape[1]).train
    optimizer = torch.optim.Adam(detector.parameters(), lr=config.learning_rate)
    times = []
    for i in range(steps + 1):
        started = time.perf_counter()
        loss = training_loss(detector, batch, config, rng, amp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step pays for oneDNN's and cuDNN's kernel choice
            times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3), help="3: RGB (tire), 1: grey")
    p.add_argument("--batch-size", type=int, default=16, help="the default preset's")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds over the formats")
    p.add_argument("--steps", type=int, default=3, help="measured steps per format and round")
    p.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        print("error: --rounds and --steps must be >= 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    base = preset("default", channels=args.channels)
    size = base.detector.cae.input_size
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(args.batch_size, args.channels, size, size, generator=generator).to(device)
    rng = np.random.default_rng(0)
    per_round: dict[str, list[float]] = {name: [] for name in FORMATS}
    for _ in range(args.rounds):
        for name, (amp, channels_last) in FORMATS.items():
            torch.manual_seed(0)
            detector = AnomalyDetector(base.detector).to(device).train()
            layout = torch.channels_last if channels_last else torch.contiguous_format
            detector.to(memory_format=layout)  # type: ignore[call-overload]
            per_round[name].append(step_ms(detector, batch, amp, args.steps, rng))
    reference = statistics.median(per_round["float32"])
    rows: dict[str, dict[str, Any]] = {
        name: {
            "ms_per_step": statistics.median(times),
            "range_ms": [min(times), max(times)],
            "speedup": reference / statistics.median(times),
            # ``fit``'s default budget in this format's precision; below, what its steps alone
            # cost here (no loading, validation or calibration), so a device's run gives its time.
            "default_steps": DEFAULT_MAX_STEPS["bfloat16" if FORMATS[name][0] else "float32"],
        }
        for name, times in per_round.items()
    }
    for row in rows.values():
        row["default_steps_min"] = row["ms_per_step"] * row["default_steps"] / 60e3
    print(
        f"training step, default preset, batch {args.batch_size} × {args.channels}×{size}², {device}, "
        f"{torch.get_num_threads()} threads, native bfloat16: {native_bfloat16(device)}; "
        f"median of {args.rounds} rounds × {args.steps} steps\n"
    )
    print(
        "| format | ms / step | range over rounds | speed-up over float32 | its default budget: steps, min |"
        "\n|---|---:|---|---:|---:|"
    )
    for name, row in rows.items():
        low, high = min(per_round[name]), max(per_round[name])
        print(
            f"| {name} | {row['ms_per_step']:.0f} | {low:.0f}–{high:.0f} | {row['speedup']:.2f}× "
            f"| {row['default_steps']}, {row['default_steps_min']:.1f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "native_bfloat16": native_bfloat16(device),
            "batch_size": args.batch_size,
            "channels": args.channels,
            "formats": rows,
        }
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
