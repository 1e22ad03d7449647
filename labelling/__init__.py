"""Archive labelling (``tonewatch label``): every customer turn or text of a file gains a prediction, resumably."""

from tonewatch.labelling.archive import LabelInputError, LabelSummary, label_file

__all__ = ["LabelInputError", "LabelSummary", "label_file"]
