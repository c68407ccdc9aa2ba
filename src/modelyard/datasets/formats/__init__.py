"""Data set intake: parse an upload, validate it, and write its canonical form.

Five formats are accepted (:data:`FORMATS`). Tables (CSV, Parquet, JSON Lines) become one
Parquet file, ``data.parquet``; arrays (NPZ, IDX) become one ``.npy`` file per array.
Training reads either form without loading it whole (``pyarrow.parquet`` row groups,
``np.load(..., mmap_mode="r")``). Intake streams: memory stays bounded whatever the size
of the upload, and what an upload expands to is checked against :class:`IntakeLimits`
while it is read.

    >>> parsed = ingest([Path("digits.csv")], Path("canonical"), label="target")  # doctest: +SKIP
    >>> parsed.schema["columns"][0]  # doctest: +SKIP
    {'name': 'pixel_0', 'dtype': 'float64'}
"""

from modelyard.datasets.formats.canonical import FORMATS, ParsedDataset
from modelyard.datasets.formats.detect import detect_format
from modelyard.datasets.formats.intake import ingest
from modelyard.datasets.formats.limits import IntakeLimits

__all__ = ["FORMATS", "IntakeLimits", "ParsedDataset", "detect_format", "ingest"]
