"""Evaluation reports and training plots: metrics.json, report.md, ROC/PRO curves, example overlays.

Plots use matplotlib's non-interactive Agg backend (a [train] extra): the service never imports this.
"""

import json
from pathlib import Path

import numpy as np
import torch

from models.preprocess import model_region, roi_region
from training.evaluate import HEADLINE, EvaluationRun
from training.metrics import pro_curve, roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_loss_curve(history: list[dict], path: Path) -> Path:
    """Training and validation loss per epoch, with the mean-image MSE as the collapse reference."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax.plot(epochs, [h["val_mse"] for h in history], label="validation MSE", linestyle="--")
    ax.plot(
        epochs, [h["mean_image_mse"] for h in history], label="mean-image MSE (collapse level)", linestyle=":"
    )
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _markdown(metrics: dict) -> str:
    lines = [
        f"# Evaluation: {metrics['category']}",
        "",
        f"Checkpoint `{metrics['checkpoint']}`, networks in {metrics.get('precision', 'float32')}; "
        f"{metrics['images']} test images, "
        f"{metrics['anomalous_images']} anomalous. Thresholds: image {metrics['thresholds']['image_threshold']:.5g}, "
        f"pixel {metrics['thresholds']['pixel_threshold']:.5g} ({metrics['thresholds']['method']}).",
        "",
        "| subset | image AUROC | pixel AUROC | AUPRO@0.3 | image F1-max | pixel F1-max | "
        "image precision | image recall | pixel IoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("all", metrics), *sorted(metrics["per_defect"].items())]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['image_auroc']:.3f} | {m['pixel_auroc']:.3f} | {m['aupro']:.3f} | "
            f"{m['image_f1_max']:.3f} | {m['pixel_f1_max']:.3f} | {m['image_precision']:.3f} | "
            f"{m['image_recall']:.3f} | {m['pixel_iou']:.3f} |"
        )
    lines += ["", "![ROC](roc.png) ![PRO](pro.png)", "", "![examples](examples.png)", ""]
    return "\n".join(lines)


def _curves(run: EvaluationRun, out: Path) -> None:
    plt = _pyplot()
    labels = np.array([d != "good" for d in run.defects])
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(labels, run.scores)
    ax.plot(fpr, tpr, label=f"image (AUROC {run.metrics['image_auroc']:.3f})")
    pixel_labels = np.concatenate([m.ravel() for m in run.masks])
    pixel_scores = np.concatenate([m.ravel() for m in run.maps])
    step = max(1, pixel_labels.size // 2_000_000)  # the plot needs no more points than that
    fpr, tpr, _ = roc_curve(pixel_labels[::step], pixel_scores[::step])
    ax.plot(fpr, tpr, label=f"pixel (AUROC {run.metrics['pixel_auroc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, pro = pro_curve(run.masks, run.maps)
    ax.plot(fpr, pro, label=f"AUPRO@0.3 {run.metrics['aupro']:.3f}")
    ax.axvline(0.3, color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="per-region overlap", title="PRO", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "pro.png", dpi=100)
    plt.close(fig)


def _pick_examples(run: EvaluationRun, per_type: int = 1, goods: int = 2) -> list[int]:
    """The highest-scoring image of each defect type and the lowest- and highest-scoring good ones."""
    picks: list[int] = []
    for defect in sorted(set(run.defects)):
        idx = [i for i, d in enumerate(run.defects) if d == defect]
        idx.sort(key=lambda i: run.scores[i])
        picks += [idx[0], idx[-1]][:goods] if defect == "good" else idx[-per_type:]
    return picks[:10]


def image_part(x: torch.Tensor, shape: tuple[int, ...], resize: str) -> np.ndarray:
    """The (h, w[, C]) part of a (C, S, S) model input that shows an image of ``shape``: without a
    letterbox's mirrored band, which is not the image."""
    top, left, h, w = model_region(shape[0], shape[1], x.shape[-1], resize)
    return x[:, top : top + h, left : left + w].permute(1, 2, 0).squeeze(-1).numpy()


def _examples(run: EvaluationRun, threshold: float, out: Path) -> None:
    plt = _pyplot()
    picks = _pick_examples(run)
    fig, axes = plt.subplots(len(picks), 4, figsize=(10, 2.5 * len(picks)), squeeze=False)
    vmax = max(float(np.percentile(np.concatenate([run.maps[i].ravel() for i in picks]), 99.9)), threshold)
    for row, i in enumerate(picks):
        # What the model inspected: with a region of interest, that box of the map and the truth.
        height, width = run.masks[i].shape
        top, left, h, w = roi_region(height, width, run.roi) if run.roi else (0, 0, height, width)
        amap, truth = (
            run.maps[i][top : top + h, left : left + w],
            run.masks[i][top : top + h, left : left + w],
        )
        image = image_part(run.images[i], (h, w), run.resize)
        recon = image_part(run.reconstructions[i], (h, w), run.resize)
        cmap = "gray" if image.ndim == 2 else None
        panels = [
            (image, cmap, f"{run.defects[i]}  score {run.scores[i]:.4g}"),
            (recon, cmap, "reconstruction"),
            (amap, "jet", "anomaly map"),
        ]
        for col, (data, cm, title) in enumerate(panels):
            kwargs = {"vmin": 0, "vmax": vmax} if col == 2 else {"vmin": 0, "vmax": 1}
            axes[row, col].imshow(data, cmap=cm, **kwargs)
            axes[row, col].set_title(title, fontsize=8)
        predicted = amap > threshold
        # green: found, red: missed, blue: false alarm
        overlay = np.stack([truth & ~predicted, truth & predicted, predicted & ~truth], axis=-1).astype(float)
        axes[row, 3].imshow(overlay)
        axes[row, 3].set_title("mask vs truth (G hit, R miss, B false)", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=80)
    plt.close(fig)


def write_report(run: EvaluationRun, out: Path) -> Path:
    """Write metrics.json, report.md, roc.png, pro.png and examples.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(run.metrics, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(run.metrics))
    _curves(run, out)
    _examples(run, run.metrics["thresholds"]["pixel_threshold"], out)
    return out


def headline(metrics: dict) -> dict:
    """The one-line summary ``evaluate`` prints: the headline metrics and the operational ones."""
    keys = (*HEADLINE, "image_precision", "image_recall", "image_accuracy", "pixel_iou")
    return {k: round(float(metrics[k]), 6) for k in keys}
