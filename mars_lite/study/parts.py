"""The dataset cut the way training cuts it, for every notebook that shows or checks the parts.

Training holds out its own validation part of the seen classes: ``train.rows.seen_split`` with the
training config's ``val_fraction`` and ``val_seed``. That need not be the split manifest's default
rule (``Split.val``): the shipped ``fast`` config holds out 30 % of the seen-class images where the
manifests say 10 %, so counting with ``Split.partition`` alone showed other validation numbers
(notebooks 00 and 01) than training used (notebook 03). :func:`training_parts` is the one place the
notebooks take the parts from, so they agree, and the validation images they count are the ones
training validates on.
"""
from __future__ import annotations

import dataclasses

from ..data.splits import SplitParts
from .setup import StudySetup, study_dataset


def training_parts(setup: StudySetup, dataset=None, config=None) -> SplitParts:
    """train / val exactly as training holds them out, query / gallery the unseen classes.

    Args:
        setup: the study setup (data folder and split).
        dataset: the scanned dataset (``study_dataset(setup)``), to avoid scanning a benchmark again.
        config: the training config whose validation rule counts (default: notebook 03's,
            ``study.study_train_config(setup)``).
    Returns:
        ``SplitParts`` whose ``train`` / ``val`` hold the same files as ``seen_split`` gives training,
        and whose ``generalized_gallery`` adds the photos of that validation part to the unseen ones.
    """
    from ..train.rows import seen_split
    from .training import study_train_config

    config = config if config is not None else study_train_config(setup)
    # the rule comes from seen_split itself, so it cannot drift from what training computes
    rule = seen_split(setup.data, setup.split, config.val_fraction, config.val_seed).val_rule
    split = dataclasses.replace(setup.split, val=rule)
    return split.partition(study_dataset(setup) if dataset is None else dataset)
