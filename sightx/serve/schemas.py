"""The API's response types: FastAPI builds the OpenAPI schema (/docs) from these."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Circle(BaseModel):
    cx: float
    cy: float
    r: float


class Gradability(BaseModel):
    """Could a grader read the photo: sightx/image/gradability.py."""

    score: float = Field(
        description="0 (unreadable) to 1, P(gradable) fitted on real photos; below the default threshold the warning possibly-ungradable"
    )
    components: dict[str, float] = Field(description="vessels, sharpness, exposure, uniformity, field, glare: each 0-1, to explain a score")
    reason: str | None = Field(None, description="below the threshold, the score's main reason in words (e.g. 'vessels not visible: blur')")
    source: str = Field(description="what computed it: 'fitted' (a model over image measures; 'rules' in records written before it)")


class PhotoMeasures(BaseModel):
    """What sightx-shard records for every sample (field, exposure, sharpness, gradability), for this photo.
    Served under the key `quality`, its name since /v1 began: renaming a response key breaks clients, so a
    /v2 would call it `measures` (docs/architecture.md, Names)."""

    orig_size: list[int] = Field(description="width, height of the photo as shown (turned upright by its EXIF orientation)")
    decode_scale: float
    circle: Circle = Field(description="field of view in the photo's pixels")
    fov_fraction: float = Field(description="share of the field circle inside the frame")
    brightness: float
    contrast: float
    sharpness: float
    gradability: Gradability | None = Field(None, description="absent for photos from shards written before the score")
    fov_fallback: str | None = Field(None, description="why the centre square was graded instead of a found field")
    exif_orientation: int | None = Field(
        None, description="the EXIF orientation (2-8) the photo was turned upright by; absent: stored upright"
    )


class Warning(BaseModel):
    code: str = Field(
        description="no-fov, fov-too-small, possibly-ungradable and its reason: too-dark, over-exposed, poor-exposure, "
        "uneven-illumination, blurred, hazy, field-cut-off"
    )
    message: str


class Timings(BaseModel):
    decode: float
    preprocess: float
    model: float = Field(description="the model call this photo was batched into")
    total: float = Field(description="request received to response ready")


class GradeResult(BaseModel):
    image: str
    grade: int = Field(description="0-4 on the ICDR scale")
    grade_name: str
    probabilities: list[float] | None = Field(None, description="P(grade 0..4), classification heads")
    score: float | None = Field(None, description="the regression score, regression heads")
    thresholds: list[float] | None = Field(None, description="score cut points between grades, regression heads")
    referable: bool = Field(description="predicted grade >= 2 (moderate or worse)")
    referable_probability: float | None = Field(None, description="P(grade >= 2), classification heads")
    quality: PhotoMeasures
    warnings: list[Warning]
    timings_ms: Timings
    model: str = Field(description="sha256 of the checkpoint that graded it")
    batch_size: int = Field(description="photos in the model call that graded it")
    gradability_model: float | None = Field(
        None, description="--gradability-model: the learned gradability score, 1 - P(Reject) in [0, 1] (1 = gradable)"
    )
    cam_png: str | None = Field(None, description="?cam=1: Grad-CAM heat map over the field, RGBA PNG, base64")
    field_jpeg: str | None = Field(None, description="?cam=1: the preprocessed field the model saw, JPEG, base64")


class GradeResponse(BaseModel):
    results: list[GradeResult]


class Validation(BaseModel):
    """The checkpoint's validation metrics at its saved epoch."""

    n: int | None = None
    kappa: float | None = None
    accuracy: float | None = None
    referable_sensitivity: float | None = None
    referable_specificity: float | None = None
    referable_auc: float | None = None
    majority_accuracy: float | None = None


class ModelInfo(BaseModel):
    arch: str
    head: str
    image_size: int
    epoch: int
    preprocess: dict[str, Any]
    thresholds: list[float] | None
    grades: list[str]
    referable_from_grade: int
    validation: Validation | None
    sha256: str
    device: str
    max_batch: int = Field(description="photos per model call at most: --max-batch, or less when tuned at start")
    batch_ms_per_photo: dict[str, float] | None = Field(
        None, description="model milliseconds per photo by batch size, as timed at start (--max-batch tuning)"
    )
    gradability_model: str | None = Field(None, description="sha256 of the --gradability-model checkpoint, when one scores photos")
    runtime: str | None = Field(None, description="what runs the model: torch, onnxruntime, openvino or openvino-bf16 (--runtime)")
    cam: bool = Field(True, description="whether ?cam=1 can add Grad-CAM heat maps (PyTorch runtimes only)")


class Status(BaseModel):
    status: str
