"""The images a load benchmark sends: the synthetic demo category, or the test images of an MVTec folder.

The synthetic generator (``training.synth``) draws 128 px textures; a camera delivers far larger
frames, and decoding, resizing and PNG encoding cost grows with the pixel count, so the images are
resized up (bicubic) to a realistic side before they are encoded once, as PNG, into request bodies.
"""

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from training.data import IMAGE_SUFFIXES
from training.defects import DEFECTS
from training.synth import write_category

SYNTHETIC_SIZE = 128  # what training.synth draws; larger sides are resized up from it


@dataclass(frozen=True)
class ImageSet:
    """Encoded images ready to send.

    Args:
        source: where they came from, for the report.
        pngs: each image as PNG bytes.
        sizes: (width, height) of each image.
    """

    source: str
    pngs: list[bytes]
    sizes: list[tuple[int, int]]

    def describe(self) -> dict:
        widths = sorted({w for w, _ in self.sizes})
        heights = sorted({h for _, h in self.sizes})
        mean_kib = sum(len(p) for p in self.pngs) / len(self.pngs) / 1024
        return {
            "source": self.source,
            "count": len(self.pngs),
            "widths": widths,
            "heights": heights,
            "mean_png_kib": round(mean_kib, 1),
        }


def encode(image: Image.Image) -> bytes:
    """PNG at Pillow's default compression, as a client or a camera SDK would write it."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def resized(image: Image.Image, side: int | None) -> Image.Image:
    """Scale so the longer side is ``side`` (aspect kept); None keeps the image as it is."""
    if side is None or max(image.size) == side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def synthetic_images(
    category: str = "demo", count: int = 64, side: int | None = 512, seed: int = 0
) -> ImageSet:
    """``count`` test images (normal and defective) of a synthetic category, resized to ``side``."""
    if count < 1:
        raise ValueError(f"count must be >= 1 (--images), got {count}")
    per_defect = max(1, count // (2 * len(DEFECTS)))
    n_good = max(1, count - per_defect * len(DEFECTS))
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        root = write_category(
            Path(tmp),
            category,
            seed=seed,
            image_size=SYNTHETIC_SIZE,
            n_train=1,
            n_test_good=n_good,
            n_test_per_defect=per_defect,
        )
        paths = sorted((root / "test").glob("*/*.png"))[:count]
        images = [resized(Image.open(p).convert("RGB"), side) for p in paths]
    label = f"synthetic '{category}' (training.synth, seed {seed}), {SYNTHETIC_SIZE} px resized to {side}"
    return ImageSet(label, [encode(im) for im in images], [im.size for im in images])


def folder_images(category_dir: Path, count: int | None = 64, side: int | None = None) -> ImageSet:
    """Test images of an MVTec AD category folder (``<dir>/test/*/``), evenly picked, optionally resized.

    PNG files sent at their own size travel as they are on disk; anything else is re-encoded as PNG.
    """
    test_dir = Path(category_dir) / "test"
    if not test_dir.is_dir():
        raise ValueError(f"{test_dir} does not exist: --data must be an MVTec-layout category folder")
    paths = sorted(p for p in test_dir.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{test_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if count is not None and count < len(paths):
        step = len(paths) / count
        paths = [paths[int(i * step)] for i in range(count)]
    pngs, sizes = [], []
    for path in paths:
        with Image.open(path) as image:
            image.load()
            out = resized(image, side)
            if out is image and path.suffix.lower() == ".png":
                pngs.append(path.read_bytes())
            else:
                pngs.append(encode(out if out.mode in ("L", "RGB", "RGBA", "I;16") else out.convert("RGB")))
            sizes.append(out.size)
    label = f"{category_dir} test images" + (f", resized to {side}" if side else "")
    return ImageSet(label, pngs, sizes)
