"""``GET /categories`` and ``GET /categories/{category}``: which models serve, and what they are."""

from typing import Annotated

from fastapi import APIRouter, Path

from app.registry import ModelEntry
from app.routes.openapi import DocumentedRoute, error_responses
from app.schemas import CategoryInfo, CategoryList
from app.services import ServicesDep

router = APIRouter(tags=["categories"], route_class=DocumentedRoute)


def category_info(entry: ModelEntry) -> CategoryInfo:
    """The entry's load state and, once loaded, its checkpoint's metadata."""
    info = CategoryInfo(category=entry.category, state=entry.state, error=entry.error, file=entry.path.name)
    checkpoint = entry.checkpoint
    if checkpoint is None:
        return info
    metadata = checkpoint.metadata
    return info.model_copy(
        update={
            "version": entry.version,
            "created_at": metadata.get("created_at"),
            "input_size": checkpoint.input_size,
            "resize": checkpoint.resize,
            "exposure_mean": checkpoint.exposure_mean,
            "roi": list(checkpoint.roi) if checkpoint.roi else None,
            "color_mode": checkpoint.color_mode,  # validated by load_checkpoint
            "anomaly_map": checkpoint.detector.config.scoring.anomaly_map,
            "test_time_flips": list(checkpoint.detector.config.scoring.test_time_flips),
            "pixel_threshold": checkpoint.calibration.pixel_threshold,
            "image_threshold": checkpoint.calibration.image_threshold,
            "calibration": checkpoint.calibration.to_dict(),
            "training": metadata.get("training") or None,
            "evaluation": metadata.get("evaluation") or None,
        }
    )


@router.get("/categories", response_model=CategoryList, responses=error_responses(500, 503))
async def list_categories(services: ServicesDep) -> CategoryList:
    """List every category with its model's load state and metadata."""
    return CategoryList(categories=[category_info(entry) for entry in services.registry.entries.values()])


@router.get("/categories/{category}", response_model=CategoryInfo, responses=error_responses(404, 500, 503))
async def get_category(
    services: ServicesDep,
    category: Annotated[str, Path(description="a category name", examples=["bottle"])],
) -> CategoryInfo:
    """Describe one category's model: version, input, thresholds, training and evaluation."""
    return category_info(services.registry.lookup(category))
