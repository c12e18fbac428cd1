"""Detection quality of training configurations under the same budget, through the project's CLI.

For each category (an MVTec-layout folder under ``--data-root``) and each configuration, it runs
``python -m training fit`` with the same budget (``--max-steps``, or ``--epochs``) and ``--seed``, then ``python -m training
evaluate --report-dir``, and records:

- image AUROC, pixel AUROC, AUPRO (FPR ≤ 0.3), image and pixel F1-max (evaluate's JSON line);
- the operational figures at the calibrated thresholds (precision, recall, F1, IoU; metrics.json);
- training time (the checkpoint's ``training.duration_s``, and the wall time of ``fit``);
- inference ms/image: the detector on 16 test images at batch size 16, median of ``--repeats``
  (model input to image score and map; no decoding, no encoding).

Configurations: ``starting`` (preset starting: 126², RGB squared-error map, SSPCAB block without its
loss), ``starting+sspcab`` (the same with ``--sspcab-loss-weight 0.1``), ``default`` (preset default),
``default-no-texture`` (the default's own weights recalibrated without the texture memory),
``default-no-flips`` (the same without test-time flip averaging), and ``default-head-map`` and
``default-error-map`` (recalibrated with one part of the fused map alone; these four need no
training, only ``default`` in the same ``--out``), ``default-letterbox`` and ``default-stretch`` (the
default with its resize pinned, ``fit --resize letterbox|stretch``, where the default chooses from the
training images' shapes), ``default-whole-frame`` (the default without the part's box that it finds
in the training images, ``fit --roi none``), ``default-reflect`` (the networks' convolutions
reflecting the image past its edge, ``fit --padding reflect``), ``default-image-252`` (the default trained
on 126² crops of images resized to 252², which it scores whole, ``fit --image-size 252``), the ablations
``default-no-head``, ``default-no-sspcab``, ``default-no-sspcab-loss``, or any other preset name of
``training.config.PRESETS``. A model that collapses to a constant output is trained on
(``fit --on-collapse warn``) and measured; its row says at which epoch. Results go to ``--out``
as quality.md and quality.json, rewritten after every run so a long run's partial results survive.

    python -m benchmarks.quality --data-root ../shared/data --categories tire magnetic_tile
    python -m benchmarks.quality --data-root /tmp/qsynth --categories demo --epochs 1   # smoke run

Options of ``fit`` that a configuration does not pin pass through to every training:
``--precision`` and ``--ema-decay`` alike for all, ``--roi CATEGORY=LEFT,TOP,RIGHT,BOTTOM`` per
category (a box belongs to one part's photos):

    python -m benchmarks.quality --data-root ../shared/data --categories tire --configs default \
        --precision bfloat16 --max-steps 4800 --roi tire=0.185,0.1375,0.8,0.8625

Runs split across processes or machines (``--out`` each) are put into one table with
``--collect DIR ... --out DIR``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load_checkpoint, read_metadata
from models.preprocess import check_roi
from training.config import DEFAULT_MAX_STEPS, PRECISIONS, PRESETS
from training.data import index_category, load_as_checkpoint
from training.fit import mixed_precision, resolve_device


@dataclass(frozen=True)
class Configuration:
    name: str
    preset: str
    fit_arguments: tuple[str, ...] = ()
    description: str = ""
    # (configuration, calibrate arguments): no training; that configuration's checkpoint from the
    # same --out, recalibrated with another map (``python -m training calibrate --anomaly-map``)
    # or without its texture memory (``--texture off``) or test-time flips.
    rescore: tuple[str, tuple[str, ...]] | None = None


CONFIGURATIONS = {
    "starting": Configuration(
        "starting",
        "starting",
        (),
        "preset starting: 126², MSE, squared-error map, SSPCAB block without its loss",
    ),
    "starting+sspcab": Configuration(
        "starting+sspcab", "starting", ("--sspcab-loss-weight", "0.1"), "starting + SSPCAB loss (λ = 0.1)"
    ),
    "default": Configuration("default", "default", (), "preset default"),
    # The default's own weights with a part of its map removed: what each part adds.
    **{
        name: Configuration(name, "default", description=description, rescore=("default", arguments))
        for name, description, arguments in (
            (
                "default-no-texture",
                "the default's weights, head and SSIM+MSGMS error without the texture memory",
                ("--texture", "off"),
            ),
            (
                "default-no-flips",
                "the default's weights and memory, the map of the image alone (no flipped views)",
                ("--test-time-flips", "none"),
            ),
            ("default-head-map", "the default's weights, the head's map alone", ("--anomaly-map", "head")),
            (
                "default-error-map",
                "the default's weights, the SSIM+MSGMS reconstruction error alone (CAE only)",
                ("--anomaly-map", "ssim+gms"),
            ),
        )
    },
    "default-letterbox": Configuration(
        "default-letterbox",
        "default",
        ("--resize", "letterbox"),
        "default on letterboxed images: aspect ratio kept, mirrored into the square",
    ),
    "default-stretch": Configuration(
        "default-stretch",
        "default",
        ("--resize", "stretch"),
        "default on stretched images: each squashed to the square, whatever its shape",
    ),
    "default-whole-frame": Configuration(
        "default-whole-frame",
        "default",
        ("--roi", "none"),
        "default on the whole image, without the part's box (--roi auto) that the default finds",
    ),
    "default-exposure": Configuration(
        "default-exposure",
        "default",
        ("--normalize-exposure",),
        "default with every image scaled to the training images' mean intensity",
    ),
    "default-ema": Configuration(
        "default-ema",
        "default",
        ("--ema-decay", "0.995"),
        "default validated and kept as a moving average of its weights (decay 0.995 per step)",
    ),
    "default-reflect": Configuration(
        "default-reflect",
        "default",
        ("--padding", "reflect"),
        "default whose convolutions reflect the image past its edge instead of padding zeros",
    ),
    "default-image-252": Configuration(
        "default-image-252",
        "default",
        ("--image-size", "252"),
        "default on images resized to 252², trained on 126² crops of them and scored whole",
    ),
    # Ablations of the default, one part removed each.
    "default-no-head": Configuration(
        "default-no-head",
        "reconstruction",
        (),
        "preset reconstruction: the default's CAE alone, SSIM+MSGMS map",
    ),
    "default-no-sspcab": Configuration(
        "default-no-sspcab", "default", ("--no-sspcab",), "default without SSPCAB blocks (CAE and head)"
    ),
    "default-no-sspcab-loss": Configuration(
        "default-no-sspcab-loss",
        "default",
        ("--sspcab-loss-weight", "0"),
        "default with SSPCAB, without its loss",
    ),
}
DEFAULT_CONFIGS = (
    "starting",
    "starting+sspcab",
    "default",
    "default-no-texture",
    "default-no-flips",
    "default-head-map",
    "default-error-map",
)
HEADLINE = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")
OPERATIONAL = (
    "image_precision",
    "image_recall",
    "image_f1_at_threshold",
    "pixel_precision",
    "pixel_recall",
    "pixel_f1_at_threshold",
    "pixel_iou",
)


def configuration(name: str) -> Configuration:
    if name in CONFIGURATIONS:
        return CONFIGURATIONS[name]
    if name in PRESETS:
        return Configuration(name, name, (), f"preset {name}")
    raise SystemExit(f"--configs: unknown {name!r}; choose among {', '.join([*CONFIGURATIONS, *PRESETS])}")


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def last_error(log: Path) -> str:
    """The CLI's one-line ``error: ...`` message in ``log`` (a collapse says when it was detected)."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
    return lines[-1].removeprefix("error: ") if lines else f"see {log}"


def run_cli(arguments: list[str], log: Path) -> tuple[int, str, float]:
    """``python -m training ...``; stderr goes to ``log``; returns (exit code, stdout, wall seconds)."""
    started = time.perf_counter()
    with open(log, "a") as err:
        err.write(f"$ python -m training {' '.join(arguments)}\n")
        err.flush()
        done = subprocess.run(
            [sys.executable, "-m", "training", *arguments], stdout=subprocess.PIPE, stderr=err, text=True
        )
    return done.returncode, done.stdout, time.perf_counter() - started


@torch.inference_mode()
def inference_ms(checkpoint_path: Path, data_root: Path, category: str, device: str, repeats: int) -> float:
    """Median ms per image of the detector on a batch of 16 test images (repeating them if fewer)."""
    checkpoint = load_checkpoint(checkpoint_path, device)
    samples = index_category(data_root, category).test
    paths = [samples[i % len(samples)].path for i in range(16)]
    batch = load_as_checkpoint(paths, checkpoint).to(device)
    times = []
    with torch.inference_mode():  # as the service runs it: no autograd graph to build
        checkpoint.detector(batch)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            checkpoint.detector(batch)
            if batch.is_cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - started) * 1000 / len(paths))
    return round(statistics.median(times), 3)


# fit's options given once to this harness for every training: (argument name, fit's flag).
SHARED_FIT_OPTIONS = (("precision", "--precision"), ("ema_decay", "--ema-decay"))


def shared_fit_options(arguments: dict) -> list[tuple[str, str]]:
    """(flag, value) of each SHARED_FIT_OPTIONS given in a run's ``arguments``."""
    return [
        (flag, str(arguments[name])) for name, flag in SHARED_FIT_OPTIONS if arguments.get(name) is not None
    ]


def passed_through(args: argparse.Namespace, category: str) -> list[str]:
    """The ``fit`` options given to this harness for every training (and ``category``'s box)."""
    arguments = [part for option in shared_fit_options(vars(args)) for part in option]
    if category in args.roi:
        arguments += ["--roi", args.roi[category]]
    return arguments


def train(
    args: argparse.Namespace,
    category: str,
    config: Configuration,
    data: list[str],
    checkpoint: Path,
    log: Path,
) -> tuple[int, float]:
    """``fit`` with the shared budget; returns (exit code, wall seconds)."""
    fit = [
        "fit",
        *data,
        "--preset",
        config.preset,
        "--out",
        str(checkpoint),
        "--seed",
        str(args.seed),
        # A collapsed model is measured, not skipped: its row says when it collapsed.
        "--on-collapse",
        "warn",
        "--no-progress",
    ]
    budget = ["--epochs", str(args.epochs)] if args.epochs else ["--max-steps", str(args.max_steps)]
    # The configuration's own arguments come last: where both set an option, the configuration's wins.
    code, _, wall = run_cli([*fit, *budget, *passed_through(args, category), *config.fit_arguments], log)
    return code, wall


def rescore(
    args: argparse.Namespace,
    category: str,
    config: Configuration,
    data: list[str],
    checkpoint: Path,
    log: Path,
) -> tuple[int, float]:
    """The base configuration's checkpoint recalibrated with another map; (exit code, wall seconds)."""
    assert config.rescore is not None
    base, calibrate_arguments = config.rescore
    source = args.out / category / base / f"{category}.safetensors"
    if not source.is_file():
        with open(log, "a") as err:
            err.write(f"error: needs {source}: run --configs {base} {config.name} with the same --out\n")
        return 2, 0.0
    arguments = [
        "calibrate",
        *data,
        "--checkpoint",
        str(source),
        "--out",
        str(checkpoint),
        *calibrate_arguments,
    ]
    code, _, wall = run_cli(arguments, log)
    return code, wall


def train_and_evaluate(args: argparse.Namespace, category: str, config: Configuration) -> dict:
    work = args.out / category / config.name
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / f"{category}.safetensors"
    log = work / "log.txt"
    data = ["--data-root", str(args.data_root), "--category", category, "--device", args.device]
    record: dict[str, Any] = {
        "category": category,
        "config": config.name,
        "description": config.description,
        "log": str(log),
    }
    if config.rescore:
        code, wall = rescore(args, category, config, data, checkpoint, log)
    else:
        code, wall = train(args, category, config, data, checkpoint, log)
    record["fit_wall_s"] = round(wall, 1)
    if code != 0:
        step = "calibrate" if config.rescore else "fit"
        return {**record, "error": f"{step} exited with {code}: {last_error(log)}"}
    training = read_metadata(checkpoint).get("training", {})
    record["training_duration_s"] = training.get("duration_s")
    record["epochs_run"] = training.get("epochs_run")
    record["collapsed_at"] = training.get("reconstruction_collapsed_at")
    report_dir = work / "report"
    code, out, wall = run_cli(
        ["evaluate", *data, "--checkpoint", str(checkpoint), "--report-dir", str(report_dir)], log
    )
    record["evaluate_wall_s"] = round(wall, 1)
    if code != 0:
        return {**record, "error": f"evaluate exited with {code}: {last_error(log)}"}
    headline = last_json_line(out)
    metrics = json.loads((report_dir / "metrics.json").read_text())
    record.update({k: headline.get(k, metrics.get(k)) for k in HEADLINE})
    record.update({k: metrics.get(k) for k in OPERATIONAL})
    record["thresholds"] = metrics.get("thresholds")
    record["inference_ms_per_image"] = inference_ms(
        checkpoint, args.data_root, category, args.device, args.repeats
    )
    record["inference_device"] = args.device
    return record


def fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fit_options(arguments: dict) -> str:
    """The pass-through ``fit`` options of a run's arguments, as a reader would type them."""
    options = [f"{flag} {value}" for flag, value in shared_fit_options(arguments)]
    options += [f"--roi {category}={box}" for category, box in sorted((arguments.get("roi") or {}).items())]
    return ", ".join(options)


def markdown(records: list[dict], args: argparse.Namespace) -> str:
    options = fit_options(vars(args))
    lines = [
        f"Same budget for every configuration: {f'--epochs {args.epochs}' if args.epochs else f'--max-steps {args.max_steps}'}, --seed {args.seed}, "
        f"{f'{options}, ' if options else ''}device {args.device}; load average {[round(x, 2) for x in os.getloadavg()]}.",
        "",
        "| category | config | image AUROC | pixel AUROC | AUPRO | image F1-max | pixel F1-max "
        "| image P / R / F1 @ thr | pixel P / R / F1 @ thr | pixel IoU | train s (epochs) | infer ms/image |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['category']} | {r['config']} | {r['error']} |" + " |" * 10)
            continue
        image_ops = " / ".join(
            fmt(r[k], 2) for k in ("image_precision", "image_recall", "image_f1_at_threshold")
        )
        pixel_ops = " / ".join(
            fmt(r[k], 2) for k in ("pixel_precision", "pixel_recall", "pixel_f1_at_threshold")
        )
        name = (
            r["config"]
            if r.get("collapsed_at") is None
            else f"{r['config']} (collapsed at epoch {r['collapsed_at']})"
        )
        lines.append(
            f"| {r['category']} | {name} | {fmt(r['image_auroc'])} | {fmt(r['pixel_auroc'])} | {fmt(r['aupro'])} "
            f"| {fmt(r['image_f1_max'])} | {fmt(r['pixel_f1_max'])} | {image_ops} | {pixel_ops} | {fmt(r['pixel_iou'])} "
            f"| {fmt(r['training_duration_s'], 0)} ({r['epochs_run']}) | {fmt(r['inference_ms_per_image'], 2)} |"
        )
    return "\n".join(lines) + "\n"


def collect(folders: list[Path], out: Path) -> int:
    """One quality.md and quality.json from the quality.json of several runs with the same budget."""
    documents = []
    for folder in folders:
        path = folder / "quality.json"
        if not path.is_file():
            raise SystemExit(f"--collect: {path} does not exist")
        documents.append(json.loads(path.read_text()))
    budgets = {
        (*(d["arguments"][k] for k in ("max_steps", "epochs", "seed", "device")), fit_options(d["arguments"]))
        for d in documents
    }
    if len(budgets) > 1:
        raise SystemExit(
            f"--collect: the runs differ in budget, seed, fit options or device: {sorted(budgets)}"
        )
    records = [record for d in documents for record in d["results"]]
    args = argparse.Namespace(**documents[0]["arguments"])
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "collected_from": [str(f) for f in folders],
        "arguments": documents[0]["arguments"],
        "load_average": [d["load_average"] for d in documents],
        "torch": documents[0]["torch"],
        "wall_s": [d["wall_s"] for d in documents],
        "results": records,
    }
    (out / "quality.json").write_text(json.dumps(document, indent=1) + "\n")
    (out / "quality.md").write_text(markdown(records, args))
    print(markdown(records, args))
    return 0


def roi_by_category(values: list[str], categories: list[str]) -> dict[str, str]:
    """``--roi CATEGORY=BOX ...`` as {category: box}; SystemExit naming a malformed or stray one."""
    boxes: dict[str, str] = {}
    for value in values:
        category, sep, box = value.partition("=")
        if not sep or not box:
            raise SystemExit(f"--roi: expected CATEGORY=LEFT,TOP,RIGHT,BOTTOM, got {value!r}")
        if category not in categories:
            raise SystemExit(f"--roi: {category!r} is not among --categories ({', '.join(categories)})")
        try:
            check_roi([float(v) for v in box.split(",")])
        except ValueError as err:
            raise SystemExit(f"--roi {category}: {err}") from None
        boxes[category] = box
    return boxes


def default_budget(precision: str | None, device: str) -> int:
    """fit's default ``--max-steps`` for ``--precision`` (None: fit's auto) on ``device``, given to
    every configuration alike."""
    try:
        bfloat16 = mixed_precision(precision or "auto", resolve_device(device))
    except ValueError as err:
        raise SystemExit(str(err)) from None
    return DEFAULT_MAX_STEPS["bfloat16" if bfloat16 else "float32"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=Path("../shared/data"), help="holds the category folders"
    )
    parser.add_argument("--categories", nargs="+", default=["tire", "magnetic_tile"])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        help=f"names ({', '.join(CONFIGURATIONS)}) or preset names",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        help="same budget for all, in optimizer steps (default: fit's own for the precision it "
        "trains in: 1200 in float32, 4800 in bfloat16)",
    )
    parser.add_argument("--epochs", type=int, default=0, help="same epochs for all instead of --max-steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fit --precision for every training (default: fit's own, auto)",
    )
    parser.add_argument(
        "--ema-decay", type=float, help="fit --ema-decay for every training (default: fit's own, off)"
    )
    parser.add_argument(
        "--roi",
        nargs="+",
        default=[],
        metavar="CATEGORY=LEFT,TOP,RIGHT,BOTTOM",
        help="fit --roi for that category's trainings (default: the preset's; the default preset's is "
        "auto, the part's box found in the training images)",
    )
    parser.add_argument(
        "--device", default="cpu", help="training, evaluation and timing device (default: cpu)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed inference repeats (median)")
    parser.add_argument("--out", type=Path, default=Path("reports/quality"))
    parser.add_argument(
        "--collect",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="train nothing: put the results of earlier runs (their --out folders) into one table in --out",
    )
    args = parser.parse_args(argv)
    if args.collect:
        return collect(args.collect, args.out)
    if args.epochs < 0:
        raise SystemExit(f"--epochs must be >= 0, got {args.epochs}")
    if args.max_steps is None:
        args.max_steps = default_budget(args.precision, args.device)
    args.roi = roi_by_category(args.roi, args.categories)
    configs = [configuration(name) for name in args.configs]
    for category in args.categories:
        index_category(args.data_root, category)  # fails now, naming the path, rather than after an hour
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    started = time.perf_counter()
    for category in args.categories:
        for config in configs:
            print(f"{category} / {config.name}: training and evaluating ...", file=sys.stderr, flush=True)
            records.append(train_and_evaluate(args, category, config))
            summary = {k: records[-1].get(k) for k in ("error", *HEADLINE, "training_duration_s")}
            print(f"  {json.dumps(summary)}", file=sys.stderr, flush=True)
            document = {
                "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "torch": torch.__version__,
                "wall_s": round(time.perf_counter() - started, 1),
                "results": records,
            }
            (args.out / "quality.json").write_text(json.dumps(document, indent=1) + "\n")
            (args.out / "quality.md").write_text(markdown(records, args))
    print(markdown(records, args))
    print(f"wrote {args.out}/quality.md and .json", file=sys.stderr)
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
