"""The peer a practitioner would write first: one FastAPI handler that does everything, one image at a time.

A sync ``def`` endpoint, so FastAPI runs each request in its thread pool: decode the upload with
Pillow, run the checkpoint at batch size 1, threshold the map, colour it with matplotlib's inferno,
blend it over the image, and return the mask and the overlay as base64 PNGs (Pillow's defaults)
in JSON. No batching, no queue, no limit on how many requests run the model at once.

It uses the project's library (``models``) for everything the model needs, so the scores and the
mask are the service's; the overlay is the obvious one (a heat-map blend, no outline), and PNGs are
written at Pillow's default compression. Run: ``python -m benchmarks.naive_service --checkpoint
weights/demo.safetensors --port 8001``.
"""

import argparse
import base64
import io
from typing import Annotated

import numpy as np
import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from models.checkpoint import load_checkpoint
from models.imageio import to_array
from models.preprocess import to_image_size

HEAT_OPACITY = 0.5


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def naive_overlay(array: np.ndarray, amap: np.ndarray, pixel_threshold: float) -> Image.Image:
    """Heat map of ``amap`` (0 → 2 × threshold) blended over the (H, W, C) image."""
    from matplotlib import colormaps  # the colormap everyone reaches for

    heat = colormaps["inferno"](np.clip(amap / (2 * pixel_threshold), 0, 1))[..., :3]  # (H, W, 3)
    rgb = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    blend = (1 - HEAT_OPACITY) * rgb / 255.0 + HEAT_OPACITY * heat
    return Image.fromarray((blend * 255).astype(np.uint8))


def create_app(checkpoint_path: str, device: str = "cpu") -> FastAPI:
    app = FastAPI(title="naive inspection service")
    checkpoint = load_checkpoint(checkpoint_path, device)
    calibration = checkpoint.calibration

    @app.get("/readyz")
    def ready() -> dict:
        return {"ready": True}

    @app.post("/inspect/{category}")
    def inspect(category: str, file: Annotated[UploadFile, File()]) -> dict:
        """Inspect one image."""
        array = to_array(Image.open(file.file), checkpoint.color_mode)  # (H, W, C) uint8
        height, width = array.shape[:2]
        with torch.no_grad():
            x = checkpoint.model_input([torch.from_numpy(array).to(device)])
            output = checkpoint.detector(x)
            amap = (
                to_image_size(output.anomaly_map[0], height, width, checkpoint.resize, checkpoint.roi)
                .cpu()
                .numpy()
            )  # (H, W)
        score = float(output.image_score[0])
        mask = amap > calibration.pixel_threshold
        return {
            "category": category,
            "results": [
                {
                    "score": score,
                    "normalized_score": float(calibration.normalize(output.image_score)[0]),
                    "is_anomalous": score > calibration.image_threshold,
                    "anomalous_area_fraction": float(mask.mean()),
                    "mask_png": png_base64(Image.fromarray(mask)),
                    "overlay_png": png_base64(naive_overlay(array, amap, calibration.pixel_threshold)),
                }
            ],
        }

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    uvicorn.run(create_app(args.checkpoint, args.device), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
