"""Archive labelling (``tonewatch label``): every customer turn or text of a file gains a prediction, resumably,
with the model in this process or in a pool of Ray actors (:mod:`tonewatch.labelling.ray_engine`)."""

from tonewatch.labelling.archive import (
    EngineError,
    LabelInputError,
    LabellingEngine,
    LabelSummary,
    LocalEngine,
    MissingExtraError,
    label_file,
)

__all__ = [
    "EngineError",
    "LabelInputError",
    "LabelSummary",
    "LabellingEngine",
    "LocalEngine",
    "MissingExtraError",
    "label_file",
]
