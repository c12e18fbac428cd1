"""The floor: what each stage of one inspection costs in one process, and the most a service could do.

No HTTP, no queue: the same images as ``serve_load`` go through the service's own functions, stage
by stage, and each stage is timed over all images, ``--repeats`` times; the per-image median of wall
and CPU time (``time.process_time``, every thread of the process) is reported.

| stage | runs in the service on | function |
|---|---|---|
| decode PNG | codec pool (parallel) | ``app.decode.decode_image`` |
| pre-process | inference worker (serial) | ``models.preprocess.to_model_input`` |
| model: reconstruction | inference worker | ``detector.cae`` at each ``--batch-sizes``; the best is used |
| model: anomaly map + score | inference worker | ``detector(x)`` minus the reconstruction, same batch |
| map to image size, mask, levels | inference worker | ``to_image_size``, ``defect_mask``, ``app.inference.map_levels`` |
| mask PNG | codec pool | ``app.encode.encode_png`` + base64 |
| overlay render + PNG | codec pool | ``app.overlay.render_overlay`` + ``encode_png`` + base64 |
| response JSON | event loop | ``json.dumps`` of the result with its two PNGs |

The floor, in images/s, is the lower of two bounds:

- CPU bound = cores / (sum of every stage's CPU-seconds per image): all cores busy, no overhead;
- serial bound = 1 / (sum of the inference worker's stages' wall time per image): the worker is one
  thread, and the model already uses every core for its own wall time.

A service that added nothing (no HTTP, no copies, perfect overlap) would reach the floor; the
serve_load report shows its measured throughput as a share of it (``--floor``). A cross-check row
times ``app.inference.run_batch`` (the worker's whole step) at the best batch size.

    python -m benchmarks.floor --weights-dir weights --category demo
    python -m benchmarks.floor --device cuda --dtypes fp32 bf16 --batch-sizes 1 8 32 128
"""

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch

from app.cpus import usable_cpus
from app.decode import decode_image
from app.encode import encode_png, to_base64
from app.inference import map_levels, run_batch
from app.overlay import render_overlay
from benchmarks.images import ImageSet, folder_images, synthetic_images
from models.checkpoint import Checkpoint, load_checkpoint
from models.preprocess import Box, to_image_size
from models.scoring import defect_mask

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
WORKER = "inference worker"
POOL = "codec pool"
LOOP = "event loop"
REFERENCE = "reference, not in the floor"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(function: Callable[[], object], device: torch.device, per: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per item of one call of ``function``, which handles ``per`` items."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    sync(device)
    return (time.perf_counter() - wall) * 1000 / per, (time.process_time() - cpu) * 1000 / per


def timed(
    function: Callable[[], object], device: torch.device, repeats: int, per: int
) -> tuple[float, float]:
    """Median (wall ms, CPU ms) per item of ``function`` over ``repeats`` calls, after one warm-up."""
    clock(function, device, per)
    walls, cpus = zip(*(clock(function, device, per) for _ in range(repeats)), strict=True)
    return statistics.median(walls), statistics.median(cpus)


def autocast(device: torch.device, dtype_name: str):
    dtype = DTYPES[dtype_name]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def batch_of(inputs: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` model inputs, cycling through the images."""
    index = torch.arange(size) % inputs.shape[0]
    return inputs[index.to(inputs.device)].contiguous()


@torch.inference_mode()
def model_by_batch(
    checkpoint: Checkpoint,
    inputs: torch.Tensor,
    batch_sizes: Sequence[int],
    dtypes: Sequence[str],
    repeats: int,
) -> list[dict]:
    """Per dtype and batch size: the reconstruction alone and the whole detector (reconstruction + map + score).

    Every repeat times every (dtype, batch size) once, reconstruction and detector back to back, so
    a burst of other load on a shared machine spreads over all of them instead of spoiling one; the
    map + score cost is the median of the per-repeat differences.
    """
    device = inputs.device
    detector = checkpoint.detector
    cases = [(dtype, size, batch_of(inputs, size)) for dtype in dtypes for size in batch_sizes]
    times: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {(d, s): [] for d, s, _ in cases}
    for repeat in range(repeats + 1):  # the first round warms up
        for dtype, size, x in cases:
            with autocast(device, dtype):
                cae = clock(partial(detector.cae, x), device, size)
                whole = clock(partial(detector, x), device, size)
            if repeat:
                times[(dtype, size)].append((*cae, *whole))
    rows = []
    for (dtype, size), samples in times.items():
        cae_wall, cae_cpu, all_wall, all_cpu = (
            statistics.median(column) for column in zip(*samples, strict=True)
        )
        rows.append(
            {
                "dtype": dtype,
                "batch_size": size,
                "reconstruction_wall_ms": round(cae_wall, 3),
                "reconstruction_cpu_ms": round(cae_cpu, 3),
                "map_and_score_wall_ms": round(statistics.median(s[2] - s[0] for s in samples), 3),
                "map_and_score_cpu_ms": round(statistics.median(s[3] - s[1] for s in samples), 3),
                "detector_wall_ms": round(all_wall, 3),
                "detector_cpu_ms": round(all_cpu, 3),
                "detector_images_per_s": round(1000 / all_wall, 1),
            }
        )
        print(
            f"  {dtype} batch {size:4d}: reconstruction {cae_wall:8.3f} ms/image, "
            f"detector {all_wall:8.3f} ms/image ({1000 / all_wall:8.1f} images/s)",
            file=sys.stderr,
            flush=True,
        )
    return rows


def stage(name: str, where: str, wall: float, cpu: float, note: str = "") -> dict:
    return {"stage": name, "runs_on": where, "wall_ms": round(wall, 3), "cpu_ms": round(cpu, 3), "note": note}


@torch.inference_mode()
def stages(
    checkpoint: Checkpoint, images: ImageSet, device: torch.device, best: dict, repeats: int
) -> list[dict]:
    """Time every stage per image; the model stages come from ``best`` (the fastest batch size)."""
    n = len(images.pngs)
    color_mode = checkpoint.color_mode
    decoded = [decode_image(png, color_mode, 10**9) for png in images.pngs]
    rows = [
        stage(
            "decode PNG",
            POOL,
            *timed(lambda: [decode_image(p, color_mode, 10**9) for p in images.pngs], device, repeats, n),
        )
    ]

    def preprocess() -> list[torch.Tensor]:
        return [checkpoint.model_input([torch.from_numpy(a).to(device)]) for a in decoded]

    rows.append(stage("pre-process (upload, resize)", WORKER, *timed(preprocess, device, repeats, n)))
    size = best["batch_size"]
    rows.append(
        stage(
            f"model: reconstruction (batch {size}, {best['dtype']})",
            WORKER,
            best["reconstruction_wall_ms"],
            best["reconstruction_cpu_ms"],
        )
    )
    rows.append(
        stage(
            "model: anomaly map + score",
            WORKER,
            best["map_and_score_wall_ms"],
            best["map_and_score_cpu_ms"],
            "detector forward minus reconstruction (a head, or SSIM/GMS maps), paired per repeat",
        )
    )
    inputs = torch.cat(preprocess())
    output = checkpoint.detector(inputs)
    threshold = checkpoint.calibration.pixel_threshold

    def postprocess() -> list:
        out = []
        for i, a in enumerate(decoded):
            height, width = a.shape[:2]
            amap = to_image_size(output.anomaly_map[i], height, width, checkpoint.resize, checkpoint.roi)
            out.append(
                (defect_mask(amap, threshold).cpu().numpy(), map_levels(amap, threshold).cpu().numpy())
            )
        return out

    rows.append(stage("map to image size, mask, levels", WORKER, *timed(postprocess, device, repeats, n)))
    maps = postprocess()
    rows.append(
        stage(
            "mask PNG + base64",
            POOL,
            *timed(lambda: [to_base64(encode_png(m)) for m, _ in maps], device, repeats, n),
        )
    )

    def overlays() -> list[str]:
        return [
            to_base64(encode_png(render_overlay(a, lv, m))) for a, (m, lv) in zip(decoded, maps, strict=True)
        ]

    rows.append(stage("overlay render + PNG + base64", POOL, *timed(overlays, device, repeats, n)))
    pngs = list(zip([to_base64(encode_png(m)) for m, _ in maps], overlays(), strict=True))
    rows.append(
        stage(
            "response JSON",
            LOOP,
            *timed(
                lambda: [json.dumps({"score": 0.5, "mask_png": m, "overlay_png": o}) for m, o in pngs],
                device,
                repeats,
                n,
            ),
        )
    )
    rows.append(
        naive_overlay_stage(
            decoded,
            postprocess_maps(output, decoded, checkpoint.resize, checkpoint.roi),
            threshold,
            device,
            repeats,
        )
    )
    return rows


def postprocess_maps(output, decoded: list[np.ndarray], resize: str, roi: Box | None) -> list[np.ndarray]:
    return [
        to_image_size(output.anomaly_map[i], a.shape[0], a.shape[1], resize, roi).float().cpu().numpy()
        for i, a in enumerate(decoded)
    ]


def naive_overlay_stage(decoded, amaps, threshold: float, device: torch.device, repeats: int) -> dict:
    """What the naive peer spends on its overlay (matplotlib colormap, Pillow's default PNG level)."""
    from benchmarks.naive_service import naive_overlay, png_base64

    def overlays() -> list[str]:
        return [png_base64(naive_overlay(a, m, threshold)) for a, m in zip(decoded, amaps, strict=True)]

    return stage(
        "naive peer's overlay + PNG + base64", REFERENCE, *timed(overlays, device, repeats, len(decoded))
    )


@torch.inference_mode()
def cross_check(
    checkpoint: Checkpoint, images: ImageSet, device: torch.device, size: int, repeats: int, dtype: str
) -> dict:
    """``app.inference.run_batch`` (the worker's whole step) at batch ``size``, per image, in the
    service's precision nearest ``dtype`` (it has no float16: that checks float32)."""
    decoded = [decode_image(png, checkpoint.color_mode, 10**9) for png in images.pngs]
    batch = [decoded[i % len(decoded)] for i in range(size)]
    precision = "bfloat16" if dtype == "bf16" else "float32"
    wall, cpu = timed(
        lambda: run_batch(checkpoint, batch, [None] * size, device, precision), device, repeats, size
    )
    return {
        "function": "app.inference.run_batch",
        "precision": precision,
        "batch_size": size,
        "wall_ms": round(wall, 3),
        "cpu_ms": round(cpu, 3),
    }


def floor_of(rows: list[dict], cores: int) -> dict:
    cpu_s = sum(r["cpu_ms"] for r in rows if r["runs_on"] != REFERENCE) / 1000
    serial_s = sum(r["wall_ms"] for r in rows if r["runs_on"] == WORKER) / 1000
    cpu_bound, serial_bound = cores / cpu_s, 1 / serial_s
    return {
        "images_per_s": round(min(cpu_bound, serial_bound), 1),
        "cpu_bound_images_per_s": round(cpu_bound, 1),
        "serial_bound_images_per_s": round(serial_bound, 1),
        "limited_by": "CPU (all cores busy)" if cpu_bound < serial_bound else "the inference worker (serial)",
        "cpu_ms_per_image": round(cpu_s * 1000, 2),
        "inference_worker_wall_ms_per_image": round(serial_s * 1000, 2),
        "cores": cores,
        "formula": "min(cores / Σ stage CPU-s per image, 1 / Σ inference-worker stage wall-s per image)",
    }


def markdown(rows: list[dict], by_batch: list[dict], floor: dict, check: dict) -> str:
    lines = ["| stage | runs on | wall ms/image | CPU ms/image |", "|---|---|---:|---:|"]
    lines += [f"| {r['stage']} | {r['runs_on']} | {r['wall_ms']:.2f} | {r['cpu_ms']:.2f} |" for r in rows]
    lines += [
        f"| **total (floor stages)** | | {sum(r['wall_ms'] for r in rows if r['runs_on'] != REFERENCE):.2f} "
        f"| {floor['cpu_ms_per_image']:.2f} |",
        "",
        f"Cross-check: `run_batch` at batch {check['batch_size']} in {check['precision']}: "
        f"{check['wall_ms']:.2f} ms/image wall, "
        f"{check['cpu_ms']:.2f} ms CPU (the worker's stages above sum to {floor['inference_worker_wall_ms_per_image']:.2f}).",
        "",
        f"**Floor: {floor['images_per_s']:.1f} images/s** on {floor['cores']} cores, limited by {floor['limited_by']} "
        f"(CPU bound {floor['cpu_bound_images_per_s']:.1f}, serial bound {floor['serial_bound_images_per_s']:.1f}; "
        f"{floor['formula']}).",
        "",
        "| dtype | batch | reconstruction ms/image | detector ms/image | detector images/s |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['dtype']} | {r['batch_size']} | {r['reconstruction_wall_ms']:.3f} | {r['detector_wall_ms']:.3f} "
        f"| {r['detector_images_per_s']:.1f} |"
        for r in by_batch
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"))
    parser.add_argument("--category", default="demo")
    parser.add_argument("--checkpoint", type=Path, help="instead of --weights-dir/--category")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--dtypes", nargs="+", default=["fp32"], choices=sorted(DTYPES), help="model precisions"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--data", type=Path, help="MVTec-layout category folder; default: synthetic images")
    parser.add_argument("--images", type=int, default=32, help="distinct images (default: 32)")
    parser.add_argument(
        "--image-size", type=int, help="longer side; default 512 synthetic, native --data; 0 native"
    )
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's, one per core, as the service)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per stage (median; default: 7)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports/bench"), help="writes floor.md and floor.json"
    )
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes) or args.repeats < 1:
        raise SystemExit("--batch-sizes and --repeats must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    path = args.checkpoint or args.weights_dir / f"{args.category}.safetensors"
    checkpoint = load_checkpoint(path, device)
    side = None if args.image_size == 0 else (args.image_size or (None if args.data else 512))
    images = (
        folder_images(args.data, args.images, side)
        if args.data
        else synthetic_images(args.category, args.images, side)
    )
    cores = usable_cpus()  # what the service sizes its threads by
    print(
        f"floor of {path} on {device} ({torch.get_num_threads()} torch threads, {cores} cores): {images.describe()}",
        file=sys.stderr,
    )
    decoded = [decode_image(png, checkpoint.color_mode, 10**9) for png in images.pngs]
    inputs = torch.cat([checkpoint.model_input([torch.from_numpy(a).to(device)]) for a in decoded])
    by_batch = model_by_batch(checkpoint, inputs, args.batch_sizes, args.dtypes, args.repeats)
    first = [r for r in by_batch if r["dtype"] == args.dtypes[0]]
    best = min(first, key=lambda r: r["detector_wall_ms"])
    rows = stages(checkpoint, images, device, best, args.repeats)
    check = cross_check(checkpoint, images, device, best["batch_size"], args.repeats, best["dtype"])
    floor = floor_of(rows, cores)
    text = markdown(rows, by_batch, floor, check)
    document = {
        "workload": {
            "checkpoint": str(path),
            "device": str(device),
            "input_size": checkpoint.input_size,
            "images": images.describe(),
            "image_side": side,
            "torch_threads": torch.get_num_threads(),
            "codecs": "the service's own (app.decode, app.inference, app.overlay, app.encode)",
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "repeats": args.repeats,
        },
        "stages": rows,
        "model_by_batch": by_batch,
        "best": best,
        "run_batch_check": check,
        "floor": floor,
    }
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floor.md").write_text(text)
    (args.out / "floor.json").write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out}/floor.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
