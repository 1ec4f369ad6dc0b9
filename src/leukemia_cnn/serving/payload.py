"""The served model's input rows: encoded image bytes, or their base64 text, one per row.

``mlflow models serve`` hands the ``image`` column over as sent: base64 text from JSON
(bytes, for models logged before the string signature), bytes from a Python caller. A row is
decoded from base64 when it is base64 text, else taken as raw image bytes: an encoded
JPEG/PNG/TIFF/BMP never is base64 text (their first bytes are not base64 characters). A row
that does not decode, JSON ``null`` included, gets a short reason (its row number and what was
wrong, never its content) and the other rows are still answered, as ``leukemia-cnn predict``
does with an unreadable file. The limits that keep memory bounded whatever a client sends
(pixels per request and per image, large images one at a time) are in docs/serving.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import re
import threading

import numpy as np
import pandas as pd
from PIL import Image

from leukemia_cnn.data.imaging import image_pixels, load_model_input, open_image
from leukemia_cnn.errors import DataError

BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/\s]+={0,2}\s*")
# The reasons of the rows of a request that failed whole, listed in its one-line error.
MAX_LISTED = 5
# Pixels one request may decode, all rows together: 2,000 of the dataset's 224x224 images, or
# two 7000x7000 photographs.
MAX_REQUEST_PIXELS = 100_000_000
# Above this size (2048x2048) an image is decoded, and its heatmap drawn, one at a time per
# process: a decoded 50-million-pixel RGB image alone takes 150 MB.
LARGE_IMAGE_PIXELS = 2048 * 2048
LARGE_IMAGE_LOCK = threading.Lock()


@functools.cache
def return_freed_memory() -> bool:
    """Have glibc give large freed blocks back to the system (Linux; once per process).

    glibc serves a block above its mmap threshold with its own mapping, unmapped when freed,
    but raises the threshold to the size of each such block freed (up to 32 MB): after one
    large image, PIL's 16 MB image blocks come from per-thread heaps that keep them (the
    server's peak memory with and without: docs/data-quality.md)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD (-3) fixed at 1 MB
    except (OSError, AttributeError):  # not glibc: its allocator decides
        return False


def one_at_a_time(pixels: int | None):
    """The process-wide lock for an image above :data:`LARGE_IMAGE_PIXELS`, else nothing."""
    if pixels and pixels > LARGE_IMAGE_PIXELS:
        return_freed_memory()
        return LARGE_IMAGE_LOCK
    return contextlib.nullcontext()


def image_bytes(item) -> bytes:
    """The encoded image of one row: bytes as given, or decoded from base64 text."""
    if isinstance(item, str):
        item = item.encode("ascii", errors="replace")
    elif isinstance(item, (bytearray, memoryview, np.bytes_)):
        item = bytes(item)
    if not isinstance(item, bytes):
        missing = item is None or (isinstance(item, float) and np.isnan(item))
        got = "null" if missing else f"a {type(item).__name__}"
        raise DataError(f"expected encoded image bytes or base64 text, got {got}")
    if item and BASE64_TEXT.fullmatch(item):
        try:
            return base64.b64decode(b"".join(item.split()), validate=True)
        except (binascii.Error, ValueError):
            pass  # text that only looks like base64 ("plain text"): the bytes as given
    return item


def decode_rows(items, image_size: int, color_mode: str, acquisition=None
                ) -> tuple[list[bytes | None], np.ndarray, list[str | None]]:
    """Decode every row: ``(encoded bytes or None, model inputs of the good rows, reasons)``.

    ``reasons[i]`` is None for a decoded row, else ``"row i: <what was wrong>"``;
    ``acquisition``: the model's ``preprocess.rescale``/``stain_normalize`` (None: neither).
    """
    encoded: list[bytes | None] = []
    arrays, reasons = [], []
    budget = MAX_REQUEST_PIXELS
    for index, item in enumerate(items):
        try:
            data = image_bytes(item)
            pixels = image_pixels(data)
            if pixels is not None and pixels > budget:
                raise DataError(f"over the cap of {MAX_REQUEST_PIXELS:,} pixels per request "
                                f"(rows x width x height; this image has {pixels:,}); not "
                                "decoded: send it in another request")
            with one_at_a_time(pixels):
                arrays.append(load_model_input(data, image_size, color_mode, acquisition))
            budget -= pixels or 0
        except DataError as exc:
            encoded.append(None)
            reasons.append(f"row {index}: {exc}".replace("<bytes>: ", ""))
            continue
        encoded.append(data)
        reasons.append(None)
    channels = 1 if color_mode == "grayscale" else 3
    x = (np.stack(arrays) if arrays
         else np.zeros((0, image_size, image_size, channels), dtype=np.float32))
    return encoded, x, reasons


def refuse_if_none_decoded(reasons: list[str | None]) -> None:
    """DataError listing the first reasons when no row of a non-empty request decoded."""
    if reasons and all(reasons):
        listed = "; ".join(reasons[:MAX_LISTED])
        more = f"; and {len(reasons) - MAX_LISTED} more" if len(reasons) > MAX_LISTED else ""
        raise DataError(f"no row holds a decodable image: {listed}{more}. Send the encoded "
                        "image file (JPEG, PNG, ...) as base64 in column 'image'")


def heatmap_image(data: bytes):
    """The decoded image a heatmap is drawn on: at most :data:`LARGE_IMAGE_PIXELS` (scaled
    down keeping its aspect, like a thumbnail; a large JPEG decoded at a reduced scale), so
    that a heatmap's memory is bounded."""
    image = open_image(data, draft_pixels=LARGE_IMAGE_PIXELS)
    if image.width * image.height > LARGE_IMAGE_PIXELS:
        scale = (LARGE_IMAGE_PIXELS / (image.width * image.height)) ** 0.5
        image.thumbnail((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    return image


def with_row_errors(frame, reasons: list[str | None], error_column: str = "error"):
    """``frame`` (one row per decoded row) spread over every row of the request: a refused row
    has no class and no probabilities, and its reason in ``error_column`` (None elsewhere)."""
    if not any(reasons):  # every row answered: the frame as predict_arrays gives it
        frame[error_column] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        return frame
    good = [index for index, reason in enumerate(reasons) if reason is None]
    full = frame.set_axis(good).reindex(range(len(reasons)))
    for name in ("model_name", "model_version"):
        if name in frame.columns and len(frame):
            full[name] = frame[name].iloc[0]
    full[error_column] = pd.Series(reasons, dtype=object)
    for name in full.columns:  # text columns: JSON null (None), not NaN, on a refused row
        if not pd.api.types.is_numeric_dtype(full[name]):
            column = full[name].astype(object)
            full[name] = column.where(column.notna(), None)
    return full


def gray_image(array: np.ndarray) -> Image.Image:
    """A preprocessed image (H, W[, C]) in [0, 1] as an 8-bit PIL image to draw a heatmap on."""
    pixels = np.round(np.clip(array[..., 0] if array.ndim == 3 else array, 0, 1) * 255)
    return Image.fromarray(pixels.astype(np.uint8))


def described_columns(frame: pd.DataFrame) -> str:
    """The columns of a request in a few words: never the request itself (a JSON body sent as
    CSV turns its whole text into column names)."""
    names = [str(name) for name in frame.columns]
    if not names:
        return "no column"
    shown = ", ".join(repr(name if len(name) <= 40 else f"{name[:40]}...") for name in names[:5])
    return f"{len(names)} column(s): {shown}" + (", ..." if len(names) > 5 else "")


def json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with missing numbers (a skipped row's probabilities, the score of a model
    without a guard) as None: the scoring server writes a float NaN as a bare ``NaN``, which is
    not JSON (``JSON.parse`` rejects the whole answer); None becomes ``null``."""
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column) and column.isna().any():
            frame[name] = column.astype(object).where(column.notna(), None)
    return frame
