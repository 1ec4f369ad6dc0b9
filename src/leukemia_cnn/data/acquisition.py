"""What a model does to every image before its preprocessing, so that another lab's
acquisition reaches it as its own did: put the red cells at the training set's size
(``preprocess.rescale``, :mod:`leukemia_cnn.data.scale`) and move the colour to the training
set's stain (``preprocess.stain_normalize``, :mod:`leukemia_cnn.data.stain`), as ``meta.json``
(:func:`leukemia_cnn.data.preprocess.scale_record`) and the logged model record them. Every path
that turns an original image into a model input applies :meth:`Acquisition.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from leukemia_cnn.data.stain import StainReference, normalise


@dataclass(frozen=True)
class Acquisition:
    """``radius``: the red-cell radius to put every image at (a fraction of its width), or
    None; ``stain``: the colour to move it to, or None."""

    radius: float | None = None
    stain: StainReference | None = None

    def apply(self, image: Image.Image) -> Image.Image:
        if self.radius is not None:
            from leukemia_cnn.data.scale import to_reference

            image = to_reference(image, self.radius)
        if self.stain is not None:
            image = normalise(image, self.stain)
        return image


def acquisition_of(record: dict) -> Acquisition | None:
    """The :class:`Acquisition` a ``meta.json`` record (or a logged model's preprocessing)
    asks for, or None when it asks for neither."""
    radius = (record.get("red_cell_radius") or {}).get("median") if record.get("rescale") else None
    stain = (StainReference.from_dict(record["stain_reference"])
             if record.get("stain_normalize") and record.get("stain_reference") else None)
    if radius is None and stain is None:
        return None
    return Acquisition(radius=radius, stain=stain)
