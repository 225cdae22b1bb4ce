"""FER2013 loading for training: the Kaggle folder layout or the original ``fer2013.csv``.

Both give ``(images uint8 (N, 48, 48), labels int64 (N,))`` with labels indexing
``relaxd.core.labels.EMOTIONS`` (alphabetical), whatever order the source uses.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from relaxd.commands.evaluate import load_folder
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import EMOTIONS

#: Class order of the ``emotion`` column in the original fer2013.csv.
CSV_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: CSV_TO_EMOTIONS[csv_index] = index in EMOTIONS.
CSV_TO_EMOTIONS = np.array([EMOTIONS.index(e) for e in CSV_EMOTIONS])
#: The CSV's ``Usage`` values for each split name.
CSV_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def load_csv(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``fer2013.csv`` whose Usage matches ``split`` (train, val or test)."""
    usage = CSV_USAGE[split]
    images, labels = [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
        if missing:
            raise RelaxdError(f"not a fer2013.csv: missing columns {sorted(missing)}", path)
        for lineno, row in enumerate(reader, start=2):
            if row["Usage"] != usage:
                continue
            pixels = np.array(row["pixels"].split(), dtype=np.uint8)
            if pixels.size != 48 * 48:
                raise RelaxdError(f"expected 2304 pixels, got {pixels.size}", path, lineno)
            images.append(pixels.reshape(48, 48))
            labels.append(CSV_TO_EMOTIONS[int(row["emotion"])])
    if not images:
        raise RelaxdError(f"no rows with Usage={usage}", path)
    return np.stack(images), np.array(labels, dtype=np.int64)


def load_split(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` from a FER2013 folder (``source/split/<class>/``) or ``fer2013.csv``.

    Unreadable images in a folder are skipped (training does not need them counted).
    """
    source = Path(source)
    if source.is_file():
        return load_csv(source, split)
    folder = load_folder(source / split)
    return folder.images, folder.labels
