"""Modality ids and caption templates shared by the losses, the model and the data pipeline.

Ids follow the reference implementation (method.md): 0 photo, 1 sketch, 2 sketch caption
("a sketch of a {}"), 3 photo caption ("a photo of a {}").
"""
from __future__ import annotations

PHOTO, SKETCH, SKETCH_CAPTION, PHOTO_CAPTION = 0, 1, 2, 3
NUM_MODALITIES = 4
MODALITY_NAMES = ("photo", "sketch", "sketch_caption", "photo_caption")
IMAGE_MODALITY_IDS = {"photo": PHOTO, "sketch": SKETCH}
# The caption kind that goes with each image modality, and its template.
CAPTION_ID_FOR = {PHOTO: PHOTO_CAPTION, SKETCH: SKETCH_CAPTION}
CAPTION_TEMPLATES = {PHOTO_CAPTION: "a photo of a {}", SKETCH_CAPTION: "a sketch of a {}"}


def modality_id(modality: str | int) -> int:
    """Id of an image modality given as ``"photo"``/``"sketch"`` or an id; clear error otherwise."""
    if isinstance(modality, int) and 0 <= modality < NUM_MODALITIES:
        return modality
    if isinstance(modality, str) and modality in IMAGE_MODALITY_IDS:
        return IMAGE_MODALITY_IDS[modality]
    raise ValueError(f"unknown modality {modality!r}: use 'photo' or 'sketch' (or an id 0..3)")


def caption(label: str, modality: str | int) -> tuple[str, int]:
    """The caption of an image of class ``label`` and its caption modality id.

    >>> caption("teddy_bear", "sketch")
    ('a sketch of a teddy bear', 2)
    """
    caption_id = CAPTION_ID_FOR[modality_id(modality)]
    return CAPTION_TEMPLATES[caption_id].format(label.replace("_", " ")), caption_id
