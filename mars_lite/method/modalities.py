"""Modality ids, caption templates and retrieval kinds shared by the losses, the model and the data
pipeline (pure Python: importing it costs nothing, so widgets can read these names too).

Ids follow the reference implementation (docs/method.md): 0 photo, 1 sketch, 2 sketch caption
("a sketch of a {}"), 3 photo caption ("a photo of a {}"). The image modalities' *names* are the
data layer's (``mars_lite.data.items.PHOTO == "photo"``); here they get their ids.

Caption templates are data: ``CAPTION_TEMPLATES`` (by caption id) is the paper's default, and
:func:`caption` takes other ones as ``{"photo": [...], "sketch": [...]}`` -- one or more templates per
image modality, each with exactly one ``{}`` (``TrainConfig.caption_templates`` has this shape;
:func:`templates_problem` says what is wrong with one).
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
# The same default keyed by image modality name, as lists: the shape of TrainConfig.caption_templates.
PAPER_TEMPLATES = {PHOTO: [CAPTION_TEMPLATES[PHOTO_CAPTION_ID]], SKETCH: [CAPTION_TEMPLATES[SKETCH_CAPTION_ID]]}
# Query embeddings for retrieval (docs/method.md, "Retrieval"): z, z - m_own + m_photo, z - m_own.
RETRIEVAL_KINDS = ("original", "converted", "semantic")


def modality_id(modality: str | int) -> int:
    """Id of an image modality given as ``"photo"``/``"sketch"`` or an id; clear error otherwise."""
    if isinstance(modality, int) and 0 <= modality < NUM_MODALITIES:
        return modality
    if isinstance(modality, str) and modality in IMAGE_MODALITY_IDS:
        return IMAGE_MODALITY_IDS[modality]
    raise ValueError(f"unknown modality {modality!r}: use 'photo' or 'sketch' (or an id 0..3)")


def templates_problem(templates) -> str | None:
    """What is wrong with a template mapping (``"'sketch' needs ..."``), or None when it is usable:
    a dict with exactly the keys ``photo`` and ``sketch``, each a non-empty list of strings that
    hold exactly one ``{}`` (where the class name goes) and no other braces."""
    if not isinstance(templates, dict) or set(templates) != set(IMAGE_MODALITY_IDS):
        return f"must be a dict with exactly the keys {sorted(IMAGE_MODALITY_IDS)}"
    for kind in sorted(templates):
        value = templates[kind]
        if not isinstance(value, (list, tuple)) or not value:
            return f"{kind!r} must be a non-empty list of templates"
        for template in value:
            # exactly one "{}" and no other brace: str.format would fail (or read a field) otherwise
            if not isinstance(template, str) or template.count("{}") != 1 or \
                    template.replace("{}", "").count("{") + template.replace("{}", "").count("}"):
                return f"{kind!r} template {template!r} must be a string with exactly one '{{}}' and no other braces"
    return None


def caption(label: str, modality: str | int, templates: dict | None = None, index: int = 0) -> tuple[str, int]:
    """The caption of an image of class ``label`` and its caption modality id.

    ``templates``: ``{"photo": [...], "sketch": [...]}`` (None: the paper's, ``PAPER_TEMPLATES``);
    ``index`` picks one of the modality's templates (taken modulo their number).

    >>> caption("teddy_bear", "sketch")
    ('a sketch of a teddy bear', 2)
    >>> caption("cat", "photo", {"photo": ["{}", "a picture of a {}"], "sketch": ["{}"]}, index=3)
    ('a picture of a cat', 3)
    """
    image_id = modality_id(modality)
    caption_id = CAPTION_ID_FOR[image_id]
    if templates is None:
        template = CAPTION_TEMPLATES[caption_id]
    else:
        problem = templates_problem(templates)
        if problem is not None:
            raise ValueError(f"caption templates {problem}, got {templates!r}")
        kind = templates[MODALITY_NAMES[image_id]]
        template = kind[index % len(kind)]
    return template.format(label.replace("_", " ")), caption_id
