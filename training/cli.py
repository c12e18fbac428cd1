"""Command line: ``python -m training synth | fit | calibrate | evaluate``.

Every failure the user can fix (bad arguments, a dataset off the layout, a broken checkpoint, a
collapsed training) ends in one line on stderr and a non-zero exit, never a traceback.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from models.cae import PADDING_MODES
from models.calibration import Calibration
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.detector import (
    AnomalyDetector,
    DetectorConfig,
    with_anomaly_map,
    with_test_time_flips,
    with_texture,
)
from models.flips import FLIPS
from models.precision import PRECISIONS as PRECISIONS_AT_INFERENCE
from models.precision import check_precision
from models.preprocess import RESIZE_MODES, Box, check_roi, roi_region
from models.scoring import ANOMALY_MAPS, FUSED_MAP, HEAD_MAPS, ScoringConfig
from models.texture_memory import TextureConfig
from training import synth
from training.calibrate import calibrate_f1_optimal, calibrate_on_normals
from training.config import LR_SCHEDULES, ON_COLLAPSE, PRECISIONS, PRESETS, TrainConfig, preset
from training.data import (
    DataError,
    choose_resize,
    detect_color_mode,
    fingerprint,
    image_shape,
    index_category,
    load_as_checkpoint,
    load_batch,
    mean_intensity,
    split_train_val,
)
from training.fit import Snapshot, TrainingCollapsed, fit, mixed_precision, resolve_device
from training.part_box import MARGIN, MAX_MARGIN, check_margin, find_part_box

EXIT_USAGE = 2


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, required=True, help="MVTec AD layout root (holds <category>/)")
    p.add_argument("--category", required=True, help="category folder name under --data-root")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")


def _add_inference_precision(p: argparse.ArgumentParser, purpose: str) -> None:
    p.add_argument(
        "--precision",
        choices=PRECISIONS_AT_INFERENCE,
        default="float32",
        help=f"what the networks compute in: {purpose} (bfloat16 only where native: a GPU from Ampere "
        "on, a CPU with AMX or AVX512-BF16; default: float32)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic category in MVTec AD layout")
    synth.add_arguments(p)

    p = sub.add_parser("fit", help="train, calibrate and save one category's checkpoint")
    _add_data(p)
    p.add_argument(
        "--out", type=Path, required=True, help="checkpoint to write, e.g. weights/NAME.safetensors"
    )
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="model and training preset")
    p.add_argument(
        "--epochs",
        type=int,
        help="epochs to run (default: enough for --max-steps); early stopping may end sooner",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        help="training budget in optimizer steps when --epochs is not given (default 1200 in "
        "float32, 4800 in bfloat16, which needs more steps to match float32 and then beats it)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="learning rate over the planned steps")
    p.add_argument(
        "--ema-decay",
        type=float,
        help="validate, early-stop on and keep an exponential moving average of the weights with this "
        "decay per step (e.g. 0.995), instead of the live weights (default 0: off)",
    )
    p.add_argument("--ssim-loss-weight", type=float)
    p.add_argument("--sspcab-loss-weight", type=float, help="λ of the SSPCAB self-supervised loss")
    p.add_argument(
        "--no-sspcab",
        action="store_true",
        help="ablation: no SSPCAB block in the autoencoder or the head (and so no SSPCAB loss)",
    )
    p.add_argument(
        "--padding",
        choices=PADDING_MODES,
        help="what the networks' 3×3 convolutions see past the image's edge: zeros (a black frame) "
        "or its reflection (default: the preset's)",
    )
    p.add_argument(
        "--seamless-probability",
        type=float,
        help="share of synthetic blob anomalies cloned seamlessly (Poisson) instead of pasted",
    )
    p.add_argument("--augment", choices=("none", "flip", "flip+rot90"))
    p.add_argument(
        "--patience",
        type=int,
        help="early-stopping patience in epochs, exactly (0: off; default preset: 20 epochs or a quarter "
        "of the planned epochs, whichever is more)",
    )
    p.add_argument(
        "--snapshot-every",
        type=int,
        metavar="STEPS",
        help="also write the model of the epoch that completes every STEPS steps, calibrated, to "
        "NAME-snapshots/stepN.safetensors beside --out (where the service does not load them), to "
        "compare on real defects: the validation loss on synthetic anomalies that picks --out need "
        "not track them (default 0: off; --patience 0 keeps early stopping from ending the run first)",
    )
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--image-quantile", type=float)
    p.add_argument("--pixel-quantile", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--input-size", type=int, help="model input side (a multiple of the CAE's total pooling)")
    p.add_argument(
        "--image-size",
        type=int,
        help="resize images to this side instead of the model input's and train on model-input crops "
        "of them; the whole image is scored at this side (more pixels per defect, more inference "
        "time: about (image size / input size)² as much)",
    )
    p.add_argument(
        "--resize",
        choices=("auto", *RESIZE_MODES),
        help="how an image fits the square input: letterbox keeps its aspect ratio, stretch squashes "
        "it, auto stretches images that share one shape and letterboxes images that vary "
        "(default: the preset's, auto but for the starting preset's stretch)",
    )
    p.add_argument(
        "--roi",
        metavar="auto|none|LEFT,TOP,RIGHT,BOTTOM",
        help="inspect only this box of every image, as fractions of its width and height (0.2,0.1,0.8,0.9: "
        "the middle 60%% of the width, 80%% of the height): the model's pixels go to the part, not "
        "to what the camera sees around it; the map is zero outside. auto: the box around what "
        "stands out from the training images' border, or the whole image when nothing does or the "
        "box would cover most of it; none: the whole image (default: the preset's, auto but for "
        "the starting preset's none)",
    )
    p.add_argument(
        "--roi-margin",
        type=float,
        metavar="FRACTION",
        help=f"with --roi auto: the margin around the part, as a fraction of the frame's side (default "
        f"{MARGIN:g}; 0 to {MAX_MARGIN:g}). Parts that sit a little differently on the line need one; "
        "a smaller one gives the part more of the model's pixels",
    )
    p.add_argument(
        "--normalize-exposure",
        action="store_true",
        help="scale every image (in training and when scored) to the training images' mean "
        "intensity, so that a normal part shot brighter or darker does not score as a defect",
    )
    p.add_argument(
        "--anomaly-map",
        choices=ANOMALY_MAPS,
        help=f"scoring map ({', '.join(HEAD_MAPS)} need a preset with a head)",
    )
    p.add_argument(
        "--no-texture",
        action="store_true",
        help="ablation: no texture memory in the fused map (the head and the reconstruction error alone)",
    )
    p.add_argument(
        "--on-collapse",
        choices=ON_COLLAPSE,
        help="a model without a head that collapses to a constant output: stop with an error "
        "(default) or warn and train on (to measure the collapsed model)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="what training computes in: auto (default) is bfloat16 autocast on a GPU from Ampere on "
        "and float32 elsewhere; bfloat16 also on a CPU with AMX or AVX512-BF16 (2.5x faster there). "
        "bfloat16's default --max-steps is 4800: at float32's 1200 it lowered tire's image AUROC, "
        "at 4800 it beat float32's 1200 on tire and magnetic_tile",
    )
    p.add_argument("--color-mode", default="auto", choices=("auto", "RGB", "L"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("calibrate", help="recompute a checkpoint's thresholds")
    _add_data(p)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, help="where to write (default: update --checkpoint in place)")
    p.add_argument(
        "--anomaly-map",
        choices=ANOMALY_MAPS,
        help="score the same weights with another map (a reconstruction map drops the head; any "
        "map but the fused one drops the texture memory); compare maps without retraining",
    )
    p.add_argument(
        "--texture",
        choices=("on", "off"),
        help=f"{FUSED_MAP} map: 'on' (re)builds the texture memory from the training images, 'off' "
        "drops it (default: keep what the checkpoint has)",
    )
    p.add_argument(
        "--test-time-flips",
        metavar="FLIPS",
        help=f"average the map over these flipped views: comma-separated of {', '.join(FLIPS)}, or "
        "'none' (default: keep what the checkpoint has); a CPU host trades quality for speed here",
    )
    p.add_argument("--image-quantile", type=float, default=0.99)
    p.add_argument("--pixel-quantile", type=float, default=0.999)
    _add_inference_precision(p, "the INSPECT_PRECISION the checkpoint will be served in")
    p.add_argument(
        "--f1-optimal",
        action="store_true",
        help="OPTIMISTIC: pick F1-optimal thresholds on the labelled test set (recorded as such)",
    )

    p = sub.add_parser("evaluate", help="metrics and a report on the labelled test set")
    _add_data(p)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--report-dir", type=Path, help="write metrics.json, report.md and plots here")
    p.add_argument("--record", action="store_true", help="also store the metrics in the checkpoint")
    _add_inference_precision(p, "as that INSPECT_PRECISION would; thresholds stay the checkpoint's")
    return parser


def cmd_fit(args) -> int:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    index = index_category(args.data_root, args.category, need_test=False)
    color_mode = detect_color_mode(index.train) if args.color_mode == "auto" else args.color_mode
    chosen = preset(
        args.preset,
        channels=3 if color_mode == "RGB" else 1,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        ema_decay=args.ema_decay,
        ssim_loss_weight=args.ssim_loss_weight,
        sspcab_loss_weight=args.sspcab_loss_weight,
        augment=args.augment,
        seamless_probability=args.seamless_probability,
        patience=args.patience,
        patience_fraction=None if args.patience is None else 0.0,  # asked for: exactly that
        snapshot_every=args.snapshot_every,
        val_fraction=args.val_fraction,
        image_quantile=args.image_quantile,
        pixel_quantile=args.pixel_quantile,
        seed=args.seed,
        on_collapse=args.on_collapse,
        precision=args.precision,
    )
    config = chosen.detector
    train_cfg = chosen.train
    if args.max_steps and not args.epochs:  # a step budget asked for replaces a preset's fixed epochs
        train_cfg = replace(train_cfg, epochs=None)
    if args.input_size:
        config = replace(config, cae=replace(config.cae, input_size=args.input_size))
    if args.image_size:
        try:
            config = replace(config, image_size=args.image_size)
        except ValueError as err:
            raise ValueError(f"--image-size {args.image_size}: {err}") from None
    resize = args.resize or chosen.resize
    resize_reason = f"--resize {resize}" if args.resize else f"preset {args.preset}"
    if resize == "auto":
        resize, resize_reason = choose_resize(index.train)
    config = replace(config, resize=resize)
    roi = args.roi or chosen.roi
    roi_reason = f"--roi {roi}" if args.roi else f"preset {args.preset}"
    if args.roi_margin is not None and roi != "auto":
        raise ValueError(
            f"--roi-margin {args.roi_margin:g}: only --roi auto has a margin; this run's box is {roi} ({roi_reason})"
        )
    if roi == "auto":
        margin = MARGIN if args.roi_margin is None else _roi_margin(args.roi_margin)
        box, roi_reason = find_part_box(index.train, margin)
        config = replace(config, roi=box)
    elif roi != "none":
        config = replace(config, roi=_roi(roi))
    if args.no_sspcab:
        config = _in_both_networks(config, sspcab=False)
    if args.padding:
        config = _in_both_networks(config, padding=args.padding)
    if args.anomaly_map:
        texture = config.texture if args.anomaly_map == FUSED_MAP else None
        config = replace(
            config, scoring=replace(config.scoring, anomaly_map=args.anomaly_map), texture=texture
        )
    if args.no_texture:
        config = replace(config, texture=None)
    train_paths, val_paths = split_train_val(index.train, train_cfg.val_fraction, train_cfg.seed)
    if args.normalize_exposure:
        level = round(mean_intensity(train_paths, color_mode), 6)
        if not 0 < level < 1:
            raise ValueError(
                f"--normalize-exposure: the training images' mean intensity is {level:g} (all black or "
                "all white): there is no exposure to normalise to"
            )
        config = replace(config, exposure_mean=level)
    bfloat16 = mixed_precision(train_cfg.precision, device)
    train_cfg = train_cfg.with_budget("bfloat16" if bfloat16 else "float32")
    print(
        f"fit {args.category}: preset {args.preset} ({chosen.description}), {color_mode}, device {device}"
        f" ({'bfloat16 mixed precision' if bfloat16 else 'float32'})",
        file=sys.stderr,
    )
    print(f"  model {json.dumps(config.to_dict())}", file=sys.stderr)
    print(f"  training {json.dumps(train_cfg.to_dict())}", file=sys.stderr)
    print(f"  resize {resize}: {resize_reason}", file=sys.stderr)
    print(f"  budget {_budget(args, train_cfg, bfloat16)}", file=sys.stderr)
    started = time.perf_counter()
    if config.roi:
        top, left, height, width = roi_region(*image_shape(train_paths[0]), config.roi)
        print(
            f"  roi {','.join(f'{v:g}' for v in config.roi)} ({roi_reason}): columns {left}–"
            f"{left + width - 1}, rows {top}–{top + height - 1} of the first training image",
            file=sys.stderr,
        )
    else:
        print(f"  roi none, the whole image ({roi_reason})", file=sys.stderr)
    loading = (config.input_size, color_mode, config.resize, config.exposure_mean, config.roi)
    train = load_batch(train_paths, *loading)
    val = load_batch(val_paths, *loading)
    torch.manual_seed(train_cfg.seed)
    detector = AnomalyDetector(config)
    result = fit(detector, train, val, train_cfg, device, progress=not args.no_progress)
    epochs_planned = train_cfg.epochs_for(len(train_paths))
    if result.stopped_early:
        # A budget asked for (--max-steps 4800) that early stopping cut short must not pass unseen.
        print(
            f"  stopped early at epoch {len(result.history)} of {epochs_planned}: the validation loss "
            f"has not improved for {result.patience} epochs, so the best epoch's ({result.best_epoch}) "
            f"weights are kept; --patience 0 trains the whole budget",
            file=sys.stderr,
        )
    calibration = _remember_and_calibrate(detector, train, val, device, train_cfg)
    history = [asdict(r) for r in result.history]
    snapshot_paths = [snapshot_path(args.out, snapshot.steps) for snapshot in result.snapshots]
    summary = {
        "preset": args.preset,
        "config": train_cfg.to_dict(),
        "epochs_planned": epochs_planned,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "reconstruction_collapsed_at": result.reconstruction_collapsed_at,
        "final_train_loss": history[-1]["train_loss"],
        "best_val_loss": min(h["val_loss"] for h in history),
        "mean_image_mse": history[-1]["mean_image_mse"],
        "seed": train_cfg.seed,
        "val_fraction": train_cfg.val_fraction,
        "resize": {"mode": resize, "why": resize_reason},
        "dataset": {
            "name": args.category,
            "root": str(args.data_root),
            "train_images": len(train_paths),
            "val_images": len(val_paths),
            "fingerprint": fingerprint(index.train, index.root),
        },
        "duration_s": round(time.perf_counter() - started, 1),
        "precision": result.precision,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "snapshots": [str(path) for path in snapshot_paths],
    }
    out = save_checkpoint(
        args.out, detector, category=args.category, calibration=calibration, training=summary
    )
    for snapshot, path in zip(result.snapshots, snapshot_paths, strict=True):
        _save_snapshot(snapshot, path, detector, train, val, device, train_cfg, args.category, summary)
    log_path = out.with_suffix(".log.json")
    log_path.write_text(json.dumps({"summary": summary, "history": history}, indent=1) + "\n")
    _loss_plot(history, out.with_suffix(".loss.png"))
    print(
        json.dumps(
            {
                "checkpoint": str(out),
                **{
                    k: summary[k]
                    for k in ("epochs_planned", "epochs_run", "best_epoch", "stopped_early", "duration_s")
                },
                "image_threshold": calibration.image_threshold,
                "pixel_threshold": calibration.pixel_threshold,
                "snapshots": summary["snapshots"],
            }
        )
    )
    return 0


def snapshot_path(out: Path, steps: int) -> Path:
    """Where ``fit --snapshot-every`` writes the model after ``steps`` steps: a folder beside ``out``,
    so a weights folder the service serves does not take each snapshot for a category."""
    return out.parent / f"{out.stem}-snapshots" / f"step{steps}{out.suffix}"


def _remember_and_calibrate(
    detector: AnomalyDetector,
    train: torch.Tensor,
    val: torch.Tensor,
    device: torch.device,
    train_cfg: TrainConfig,
) -> Calibration:
    """Fill a trained detector's texture memory from the training images, then calibrate it on the
    held-out normal ones."""
    if detector.texture is not None:
        detector.texture.remember(train, seed=train_cfg.seed)
    return calibrate_on_normals(detector, val, device, train_cfg.image_quantile, train_cfg.pixel_quantile)


def _save_snapshot(
    snapshot: Snapshot,
    path: Path,
    detector: AnomalyDetector,
    train: torch.Tensor,
    val: torch.Tensor,
    device: torch.device,
    train_cfg: TrainConfig,
    category: str,
    summary: dict,
) -> None:
    """Load ``snapshot`` into ``detector`` and write it as a checkpoint, with a texture memory and
    thresholds of its own from the same images as the kept model's."""
    detector.load_state_dict(snapshot.state)  # its texture memory was still empty when it was taken
    calibration = _remember_and_calibrate(detector, train, val, device, train_cfg)
    training = {k: v for k, v in summary.items() if k != "snapshots"}
    training["snapshot"] = {"epoch": snapshot.epoch, "steps": snapshot.steps, "val_loss": snapshot.val_loss}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, detector, category=category, calibration=calibration, training=training)
    print(
        f"  snapshot of epoch {snapshot.epoch} ({snapshot.steps} steps, validation loss "
        f"{snapshot.val_loss:.4f}): {path}",
        file=sys.stderr,
    )


def _loss_plot(history: list[dict], path: Path) -> None:
    try:
        from training.report import write_loss_curve
    except ImportError:
        print("  (matplotlib missing: no loss plot; install the [train] extra)", file=sys.stderr)
        return
    write_loss_curve(history, path)


def _flip_names(text: str) -> tuple[str, ...]:
    """``--test-time-flips``: "none" or comma-separated flip names, checked as the scoring checks them."""
    names = () if text == "none" else tuple(name.strip() for name in text.split(","))
    try:
        ScoringConfig(test_time_flips=names)
    except ValueError as err:
        raise ValueError(f"--test-time-flips {text!r}: {err}") from None
    return names


def _in_both_networks(config: DetectorConfig, **fields) -> DetectorConfig:
    """``config`` with ``fields`` set in the autoencoder's config and, if it has one, the head's:
    an ablation or an option of the networks' design applies to both of them."""
    head = replace(config.head, **fields) if config.head is not None else None
    return replace(config, cae=replace(config.cae, **fields), head=head)


def _roi(text: str) -> Box:
    """``--roi``'s comma-separated fractions as a checked box (``auto`` and ``none`` are handled
    before)."""
    try:
        return check_roi([float(v) for v in text.split(",")])
    except ValueError as err:
        raise ValueError(f"--roi {text!r}: {err}") from None


def _roi_margin(margin: float) -> float:
    try:
        return check_margin(margin)
    except ValueError as err:
        raise ValueError(f"--roi-margin {margin:g}: {err}") from None


def _budget(args, train_cfg: TrainConfig, bfloat16: bool) -> str:
    """What ``fit`` will train for, and why: bfloat16's default is four times float32's steps."""
    if train_cfg.epochs is not None:
        why = "--epochs" if args.epochs else f"preset {args.preset}"
        return f"{train_cfg.epochs} epoch{'s' if train_cfg.epochs != 1 else ''} ({why})"
    if args.max_steps:
        return f"{train_cfg.max_steps} steps (--max-steps)"
    return f"{train_cfg.max_steps} steps ({'bfloat16' if bfloat16 else 'float32'}'s default; --max-steps sets it)"


def _precision(name: str, device: torch.device) -> str:
    """``--precision`` of calibrate and evaluate, checked against ``device``."""
    try:
        return check_precision(name, device)
    except ValueError as err:
        raise ValueError(f"--precision {name}: {err}") from None


def cmd_calibrate(args) -> int:
    flips = None if args.test_time_flips is None else _flip_names(args.test_time_flips)
    device = resolve_device(args.device)
    precision = _precision(args.precision, device)
    checkpoint = load_checkpoint(args.checkpoint, device)
    training = checkpoint.metadata.get("training") or {}
    index = index_category(args.data_root, args.category, need_test=args.f1_optimal)
    # The same normal images fit held out: same fraction, same seed.
    seed = training.get("seed", 0)
    train_paths, val_paths = split_train_val(index.train, training.get("val_fraction", 0.1), seed)
    val = load_as_checkpoint(val_paths, checkpoint)
    if args.anomaly_map:
        detector = with_anomaly_map(checkpoint.detector, args.anomaly_map).to(device)
        checkpoint = replace(checkpoint, detector=detector)
    if args.texture:
        detector = checkpoint.detector
        if detector.config.scoring.anomaly_map != FUSED_MAP:
            raise ValueError(
                f"--texture: a texture memory joins the {FUSED_MAP} map only, and this checkpoint "
                f"scores with {detector.config.scoring.anomaly_map!r}"
            )
        texture = (detector.config.texture or TextureConfig()) if args.texture == "on" else None
        detector = with_texture(detector, texture).to(device)
        if detector.texture is not None:
            train = load_as_checkpoint(train_paths, checkpoint)
            detector.texture.remember(train, seed=seed)
        checkpoint = replace(checkpoint, detector=detector)
    if flips is not None:
        detector = with_test_time_flips(checkpoint.detector, flips).to(device)
        checkpoint = replace(checkpoint, detector=detector)
    calibration = calibrate_on_normals(
        checkpoint.detector, val, device, args.image_quantile, args.pixel_quantile, precision
    )
    if args.f1_optimal:
        from training.evaluate import evaluate

        run = evaluate(replace(checkpoint, calibration=calibration), index, device, precision)
        labels = np.array([d != "good" for d in run.defects])
        maps = [torch.from_numpy(m) for m in run.maps]
        calibration = calibrate_f1_optimal(run.scores, labels, maps, run.masks, calibration.score_scale)
        calibration = replace(calibration, details={**calibration.details, "precision": precision})
    out = args.out or args.checkpoint
    save_checkpoint(
        out,
        checkpoint.detector,
        category=checkpoint.category,
        calibration=calibration,
        training=training,
        # Metrics measured with another map no longer describe this checkpoint.
        evaluation=None
        if args.anomaly_map or args.texture or args.test_time_flips is not None
        else checkpoint.metadata.get("evaluation"),
    )
    print(json.dumps({"checkpoint": str(out), **calibration.to_dict()}))
    return 0


def cmd_evaluate(args) -> int:
    from training.evaluate import evaluate
    from training.report import headline

    device = resolve_device(args.device)
    precision = _precision(args.precision, device)
    checkpoint = load_checkpoint(args.checkpoint, device)
    index = index_category(args.data_root, args.category)
    started = time.perf_counter()
    run = evaluate(checkpoint, index, device, precision)
    if args.report_dir:
        from training.report import write_report

        write_report(run, args.report_dir)
        print(f"report written to {args.report_dir}", file=sys.stderr)
    if args.record:
        save_checkpoint(
            args.checkpoint,
            checkpoint.detector,
            category=checkpoint.category,
            calibration=checkpoint.calibration,
            training=checkpoint.metadata.get("training"),
            evaluation={
                **headline(run.metrics),
                "dataset": args.category,
                "images": run.metrics["images"],
                "precision": precision,
            },
        )
    print(
        f"evaluated {run.metrics['images']} images in {time.perf_counter() - started:.1f} s", file=sys.stderr
    )
    print(json.dumps(headline(run.metrics)))
    return 0


COMMANDS = {"synth": synth.run, "fit": cmd_fit, "calibrate": cmd_calibrate, "evaluate": cmd_evaluate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainingCollapsed as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (DataError, CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
