"""The building blocks of the config schema (:mod:`leukemia_cnn.config_schema`): how a knob is
declared (:func:`setting`, :func:`group`), the types several knobs share, the error for a bad
value, and the image geometry the schema checks across groups."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from leukemia_cnn.errors import ConfigError


def setting(default: Any, *, allowed: str | None = None, none: str | None = None,
            late: bool = False, **constraints: Any) -> Any:
    """A knob: its default (what a params file without the key takes); ``allowed``: words for
    what is allowed, instead of the ones made from the type and range; ``none``: what null
    means; ``late``: the knob came after the first runs (a params file may lack it, and at its
    default it does not enter a run's configuration id; other keys are required);
    ``constraints``: pydantic's (``ge``/``gt``/``le``/``lt``, ``min_length``, ``pattern``)."""
    extra = {"late": late, "allowed": allowed, "none": none}
    if isinstance(default, (list, dict)):
        return Field(default_factory=lambda: copy.deepcopy(default), json_schema_extra=extra,
                     **constraints)
    return Field(default, json_schema_extra=extra, **constraints)


def group(model: type[BaseModel], late: bool = False) -> Any:
    """A nested group of knobs (``late``: a params file may lack the whole group)."""
    return Field(default_factory=model, json_schema_extra={"late": late})


def invalid(key: str, value: Any, allowed: str) -> ConfigError:
    """The error for a bad value: names the key, the value and what is allowed."""
    return ConfigError(f"config key `{key}` = {value!r} is invalid; allowed: {allowed}")


def _two_equal(value: list[int]) -> list[int]:
    if len(value) != 2 or value[0] != value[1]:
        raise ValueError("two equal integers")
    return value


# A non-empty string (not only blanks); a count; a square HOG cell or block.
Text = Annotated[str, Field(pattern=r"\S")]
Count = Annotated[int, Field(ge=1)]
Square = Annotated[list[Count], AfterValidator(_two_equal)]


class Knobs(BaseModel):
    """A group of knobs: typed without conversion (``"15"`` is not an int, nor ``true`` 1),
    finite numbers, no key the model lacks."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def hog_feature_length(image_size: int | tuple[int, int], pixels_per_cell: int,
                       cells_per_block: int, orientations: int) -> int:
    """Length of skimage's HOG vector (``feature_vector=True``) for an image of side
    ``image_size`` or of shape (H, W); 0 when no block fits."""
    sides = (image_size, image_size) if isinstance(image_size, int) else image_size
    blocks = [max(side // pixels_per_cell - cells_per_block + 1, 0) for side in sides]
    return blocks[0] * blocks[1] * cells_per_block**2 * orientations


def check_spatial(size: int, kernels: list[int], padding: str, pool: int) -> None:
    """Each conv + pool block must leave at least a 1x1 feature map."""
    side = size
    for index, kernel in enumerate(kernels):
        side = side - kernel + 1 if padding == "valid" else side
        side //= pool
        if side < 1:
            raise ConfigError(
                f"config keys `model.kernel_sizes`/`model.filters`: conv layer {index + 1} leaves "
                f"no pixels for a {size}x{size} input (padding={padding}, pool={pool}); "
                "use fewer conv layers, smaller kernels, padding=same or a larger "
                "preprocess.image_size")
