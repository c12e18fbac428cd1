"""The JSON the service answers with, named by role, with the examples shown in the OpenAPI docs."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.registry import LoadState
from models.scoring import ANOMALY_MAPS, FUSED_MAP

ColorMode = Literal["RGB", "L"]
ResizeMode = Literal["stretch", "letterbox"]  # models.preprocess.RESIZE_MODES
Precision = Literal["float32", "bfloat16"]  # models.precision.PRECISIONS
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="


class FieldError(BaseModel):
    loc: list[str] = Field(description="where: e.g. ['query', 'threshold']")
    msg: str
    type: str


class ErrorDetail(BaseModel):
    """Every error answer: a human-readable ``detail`` and, depending on the error, some context."""

    detail: str = Field(description="what went wrong and, where possible, how to fix it")
    available: list[str] | None = Field(default=None, description="404: the categories that exist")
    filename: str | None = Field(default=None, description="the uploaded file at fault, when it had a name")
    state: LoadState | None = Field(default=None, description="503: the category's load state")
    errors: list[FieldError] | None = Field(default=None, description="422: each invalid parameter")
    request_id: str | None = Field(default=None, description="500: quote it to find the error in the logs")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": "unknown category 'bottel'", "available": ["bottle", "screw"]}]
        }
    )


class ModelInfo(BaseModel):
    """The model that answered: enough to reproduce and interpret its numbers."""

    version: str = Field(description="checkpoint creation time and the first 8 hex digits of its SHA-256")
    created_at: str | None
    input_size: int = Field(description="side of the square the image is resized to for the model")
    resize: ResizeMode = Field(
        default="stretch",
        description="how the image fits that square: stretch squashes it, letterbox keeps its aspect "
        "ratio and mirrors it into the rest; either way the mask covers the image's own pixels",
    )
    exposure_mean: float | None = Field(
        default=None,
        description="when set, each image is scaled to this mean intensity (0–1: the training images') "
        "before the model, so a brighter or darker shot of a normal part does not read as a defect; "
        "null: images are taken as they are",
    )
    roi: list[float] | None = Field(
        default=None,
        description="region of interest: only this box of the image, [left, top, right, bottom] as "
        "fractions of its width and height, is inspected; the mask and the map are empty outside "
        "it. null: the whole image",
    )
    color_mode: ColorMode = Field(description="images are converted to this mode before inference")
    anomaly_map: str = Field(
        description=f"how the anomaly map is computed: one of {', '.join(ANOMALY_MAPS)} "
        f"({FUSED_MAP}, the default, fuses the discriminative head with the reconstruction error)"
    )
    test_time_flips: list[str] = Field(
        default_factory=list,
        description="flips of the image (h, v, hv) whose maps are averaged with its own; empty: the "
        "image alone. Scores of checkpoints with different flips are not comparable",
    )
    pixel_threshold: float = Field(
        description="calibrated anomaly-map value above which a pixel is defective"
    )
    image_threshold: float = Field(description="calibrated image score above which an image is anomalous")
    precision: Precision = Field(
        default="float32",
        description="what the model's networks computed this answer in (INSPECT_PRECISION); bfloat16 "
        "moves scores slightly off the float32 calibration, maps and scores are float32 either way",
    )


class InspectionResult(BaseModel):
    """The verdict on one image; PNGs are base64, at the image's own (EXIF-upright) resolution."""

    filename: str | None = Field(description="the multipart part's file name; null for a raw body")
    width: int
    height: int
    score: float = Field(description="raw image score (the anomaly map's maximum or top-k mean)")
    normalized_score: float = Field(ge=0, le=1, description="score mapped to [0, 1]; 0.5 at `threshold`")
    threshold: float = Field(description="the calibrated image threshold that `score` is compared with")
    is_anomalous: bool = Field(description="score > threshold (never affected by the `threshold` query)")
    pixel_threshold: float = Field(
        description="the pixel threshold the mask used: the query's, or calibrated"
    )
    anomalous_area_fraction: float = Field(ge=0, le=1, description="share of the image's pixels in the mask")
    mask_png: str | None = Field(default=None, description="1-bit PNG, white = defect (include=mask)")
    overlay_png: str | None = Field(
        default=None,
        description="RGB PNG: the image, an inferno heat map, the mask outlined in cyan (include=overlay)",
    )
    anomaly_map_png: str | None = Field(
        default=None,
        description="8-bit PNG: min(255, round(128 · map / calibrated pixel_threshold)); "
        "128 = the calibrated pixel threshold (include=anomaly_map)",
    )


class InspectionResponse(BaseModel):
    """The verdicts on every image of a request, in upload order."""

    category: str
    model: ModelInfo
    results: list[InspectionResult]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "category": "bottle",
                    "model": {
                        "version": "2025-01-31T10:00:00+00:00-3fa2c91b",
                        "created_at": "2025-01-31T10:00:00+00:00",
                        "input_size": 256,
                        "resize": "letterbox",
                        "color_mode": "RGB",
                        "anomaly_map": "head+ssim+gms",
                        "test_time_flips": ["h", "v", "hv"],
                        "pixel_threshold": 0.41,
                        "image_threshold": 0.57,
                        "precision": "float32",
                    },
                    "results": [
                        {
                            "filename": "bottle_001.png",
                            "width": 900,
                            "height": 900,
                            "score": 0.83,
                            "normalized_score": 0.97,
                            "threshold": 0.57,
                            "is_anomalous": True,
                            "pixel_threshold": 0.41,
                            "anomalous_area_fraction": 0.012,
                            "mask_png": PNG_BASE64,
                            "overlay_png": PNG_BASE64,
                        }
                    ],
                }
            ]
        }
    )


class CategoryInfo(BaseModel):
    """One category's checkpoint: its load state and, once loaded, what it is and how well it did."""

    category: str = Field(description="the checkpoint's file stem, as in /inspect/{category}")
    state: LoadState
    error: str | None = Field(default=None, description="why loading failed")
    file: str = Field(description="the checkpoint's file name in the weights folder")
    version: str | None = None
    created_at: str | None = None
    input_size: int | None = None
    resize: ResizeMode | None = None
    exposure_mean: float | None = None
    roi: list[float] | None = None
    color_mode: ColorMode | None = None
    anomaly_map: str | None = None
    test_time_flips: list[str] | None = None
    pixel_threshold: float | None = None
    image_threshold: float | None = None
    calibration: dict[str, Any] | None = Field(default=None, description="how the thresholds were derived")
    training: dict[str, Any] | None = Field(
        default=None, description="training summary stored in the checkpoint"
    )
    evaluation: dict[str, Any] | None = Field(
        default=None, description="test metrics stored in the checkpoint"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "category": "bottle",
                    "state": "ready",
                    "file": "bottle.safetensors",
                    "version": "2025-01-31T10:00:00+00:00-3fa2c91b",
                    "created_at": "2025-01-31T10:00:00+00:00",
                    "input_size": 256,
                    "resize": "letterbox",
                    "color_mode": "RGB",
                    "anomaly_map": "head+ssim+gms",
                    "test_time_flips": ["h", "v", "hv"],
                    "pixel_threshold": 0.41,
                    "image_threshold": 0.57,
                    "calibration": {"method": "normal-quantile", "score_scale": 0.05},
                    "training": {"epochs": 100},
                    "evaluation": {"image_auroc": 0.98, "pixel_aupro": 0.91},
                },
                {
                    "category": "screw",
                    "state": "failed",
                    "file": "screw.safetensors",
                    "error": "no such tensor",
                },
            ]
        }
    )


class CategoryList(BaseModel):
    categories: list[CategoryInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Ready once every checkpoint has finished loading and at least one serves."""

    ready: bool
    detail: str
    categories: dict[str, LoadState] = Field(description="every category's load state")
    failed: dict[str, str] = Field(description="the categories that failed to load, with their error")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "detail": "1 of 2 categories ready; 1 failed",
                    "categories": {"bottle": "ready", "screw": "failed"},
                    "failed": {"screw": "weights/screw.safetensors: no 'sspcab_inspect' metadata"},
                }
            ]
        }
    )


class ReloadResult(BaseModel):
    """What ``POST /admin/reload`` did, per category."""

    loaded: list[str] = Field(description="new or changed checkpoints, loaded and warmed up, now serving")
    unchanged: list[str] = Field(description="checkpoints whose file is the one already serving")
    failed: dict[str, str] = Field(
        description="checkpoints that could not be loaded, with the error; the model they would have "
        "replaced, if any, still serves"
    )
    removed: list[str] = Field(description="categories whose file has gone; they no longer serve")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "loaded": ["bottle"],
                    "unchanged": ["screw"],
                    "failed": {"tire": "tire.safetensors: no 'sspcab_inspect' metadata"},
                    "removed": ["cable"],
                }
            ]
        }
    )
