"""The same job served by LitServe, with LitServe's own dynamic batching.

LitServe (Lightning AI) runs an HTTP front end and an inference worker process; the worker
collects up to ``max_batch_size`` requests or waits ``batch_timeout`` seconds, then calls
``decode_request`` per request, ``batch``, ``predict``, ``unbatch`` and ``encode_response`` per
request. The computation is this project's, unchanged: the model pass is ``app.inference.run_batch``
and the answer is rendered and encoded with ``app.overlay`` and ``app.encode``, so a difference to
``service`` comes from the serving framework alone. Note that in LitServe decoding and encoding run
in the inference worker, one request after another, not in parallel with the model.

Run: ``python -m benchmarks.litserve_service --checkpoint weights/demo.safetensors --port 8002``
(needs the ``bench`` extra: ``pip install litserve``).
"""

import argparse
from pathlib import Path

import litserve as ls
import numpy as np
import torch

from app.decode import decode_image
from app.encode import encode_png, to_base64
from app.inference import ImageInference, run_batch
from app.overlay import render_overlay
from models.checkpoint import load_checkpoint

MAX_IMAGE_PIXELS = 40_000_000  # the service's default INSPECT_MAX_IMAGE_PIXELS


class InspectAPI(ls.LitAPI):
    """One category's checkpoint behind ``POST /inspect/<category>``."""

    def __init__(self, checkpoint_path: str, **options) -> None:
        self.checkpoint_path = checkpoint_path
        self.category = Path(checkpoint_path).stem
        super().__init__(api_path=f"/inspect/{self.category}", **options)

    def setup(self, device: str) -> None:
        self.device = torch.device(device)
        self.checkpoint = load_checkpoint(self.checkpoint_path, self.device)

    def decode_request(self, request) -> np.ndarray:
        """The multipart part ``file`` → (H, W, C) uint8, by the service's own decoder."""
        return decode_image(request["file"].file.read(), self.checkpoint.color_mode, MAX_IMAGE_PIXELS)

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs  # images of any sizes: run_batch resizes each to the model input

    def predict(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, ImageInference]]:
        inferences = run_batch(self.checkpoint, images, [None] * len(images), self.device)
        return list(zip(images, inferences, strict=True))

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: tuple[np.ndarray, ImageInference]) -> dict:
        image, inference = output
        overlay = render_overlay(image, inference.anomaly_map, inference.mask)
        return {
            "category": self.category,
            "results": [
                {
                    "score": inference.score,
                    "normalized_score": inference.normalized_score,
                    "is_anomalous": inference.is_anomalous,
                    "anomalous_area_fraction": inference.anomalous_area_fraction,
                    "mask_png": to_base64(encode_png(inference.mask)),
                    "overlay_png": to_base64(encode_png(overlay)),
                }
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    args = parser.parse_args()
    api = InspectAPI(
        args.checkpoint, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout_ms / 1000
    )
    accelerator = "cuda" if args.device.startswith("cuda") else "cpu"
    server = ls.LitServer(api, accelerator=accelerator, devices=1, workers_per_device=1, timeout=30)
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
