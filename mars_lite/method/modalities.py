"""Modality ids, caption templates and retrieval kinds shared by the losses, the model and the data
pipeline (pure Python: importing it costs nothing, so widgets can read these names too).

Ids follow the reference implementation (docs/method.md): 0 photo, 1 sketch, 2 sketch caption
("a sketch of a {}"), 3 photo caption ("a photo of a {}"). The image modalities' *names* are the
data layer's (``mars_lite.data.items.PHOTO == "photo"``); here they get their ids.
"""
from __future__ import annotations

from ..data.items import PHOTO, SKETCH

PHOTO_ID, SKETCH_ID, SKETCH_CAPTION_ID, PHOTO_CAPTION_ID = 0, 1, 2, 3
NUM_MODALITIES = 4
MODALITY_NAMES = (PHOTO, SKETCH, "sketch_caption", "photo_caption")
IMAGE_MODALITY_IDS = {PHOTO: PHOTO_ID, SKETCH: SKETCH_ID}
# The caption kind that goes with each image modality, and its template.
CAPTION_ID_FOR = {PHOTO_ID: PHOTO_CAPTION_ID, SKETCH_ID: SKETCH_CAPTION_ID}
CAPTION_TEMPLATES = {PHOTO_CAPTION_ID: "a photo of a {}", SKETCH_CAPTION_ID: "a sketch of a {}"}
# Query embeddings for retrieval (docs/method.md, "Retrieval"): z, z - m_own + m_photo, z - m_own.
RETRIEVAL_KINDS = ("original", "converted", "semantic")


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
