"""The served model's input rows: encoded image bytes, or their base64 text, one per row.

``mlflow models serve`` base64-decodes the binary ``image`` column of ``dataframe_split`` and
``dataframe_records`` requests, but hands ``instances`` and ``inputs`` over as the base64 text
itself (as bytes). Every row is therefore taken as raw image bytes when it is not base64 text,
and decoded from base64 when it is: an encoded JPEG/PNG/TIFF/BMP never is (their first bytes
are not base64 characters), so the two cannot be confused. A row that does not decode gets a
short reason (its row number and what was wrong, never its content) and the other rows are
still answered, as ``leukemia-cnn predict`` does with an unreadable file.
"""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np

from leukemia_cnn.data.imaging import load_model_input, open_image
from leukemia_cnn.errors import DataError

BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/\s]+={0,2}\s*")
# The reasons of the rows of a request that failed whole, listed in its one-line error.
MAX_LISTED = 5


def image_bytes(item) -> bytes:
    """The encoded image of one row: bytes as given, or decoded from base64 text."""
    if isinstance(item, str):
        item = item.encode("ascii", errors="replace")
    elif isinstance(item, (bytearray, memoryview, np.bytes_)):
        item = bytes(item)
    if not isinstance(item, bytes):
        raise DataError(f"expected encoded image bytes or base64 text, got "
                        f"{type(item).__name__}")
    if item and BASE64_TEXT.fullmatch(item):
        try:
            return base64.b64decode(b"".join(item.split()), validate=True)
        except (binascii.Error, ValueError):
            pass  # text that only looks like base64 ("plain text"): the bytes as given
    return item


def decode_rows(items, image_size: int, color_mode: str, reference_radius: float | None = None
                ) -> tuple[list[bytes | None], np.ndarray, list[str | None]]:
    """Decode every row: ``(encoded bytes or None, model inputs of the good rows, reasons)``.

    ``reasons[i]`` is None for a decoded row, else ``"row i: <what was wrong>"``;
    ``reference_radius``: the model's ``preprocess.rescale`` target (None: no rescale).
    """
    encoded: list[bytes | None] = []
    arrays, reasons = [], []
    for index, item in enumerate(items):
        try:
            data = image_bytes(item)
            arrays.append(load_model_input(data, image_size, color_mode, reference_radius))
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


def decoded_images(encoded: list[bytes | None]) -> list:
    """PIL images of the decoded rows (None for a refused row), for the heatmaps."""
    return [None if data is None else open_image(data) for data in encoded]


def with_row_errors(frame, reasons: list[str | None], error_column: str = "error"):
    """``frame`` (one row per decoded row) spread over every row of the request: a refused row
    has no class and no probabilities, and its reason in ``error_column`` (None elsewhere)."""
    import pandas as pd

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
