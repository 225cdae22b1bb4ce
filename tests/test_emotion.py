"""EmotionClassifier on the shipped int8 model (ai-edge-litert only, no TensorFlow)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fer2013_dir

from relaxd.core.errors import RelaxdError
from relaxd.core.labels import EMOTIONS, MOOD_INDEX, MOODS, Mood
from relaxd.core.paths import default_model
from relaxd.vision.emotion import (
    ACCURACY_TOLERANCE,
    AGREEMENT_MIN,
    EmotionClassifier,
    load_interpreter,
    runtime,
)

REPO = Path(__file__).resolve().parent.parent


REFERENCE = json.loads((REPO / "tests" / "data" / "val_reference_top1.json").read_text())


@pytest.fixture(scope="module")
def clf() -> EmotionClassifier:
    return EmotionClassifier(default_model())


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (5, 48, 48), dtype=np.uint8)


def test_shipped_model_contract(clf):
    inp = clf._interp.get_input_details()[0]
    out = clf._interp.get_output_details()[0]
    assert tuple(inp["shape"]) == (1, 48, 48, 1) and inp["dtype"] == np.int8
    assert tuple(out["shape"]) == (1, 7) and out["dtype"] == np.int8
    assert clf.input_size == 48 and clf.labels == EMOTIONS
    # float input = pixel / 255: the lookup table maps 0 -> int8 min, 255 -> int8 max.
    assert clf._lut[0] == -128 and clf._lut[255] == 127
    assert default_model().stat().st_size <= 2 * 1024 * 1024


def test_classify_returns_probabilities(clf, faces):
    buf = clf._in_buf
    for face in faces:
        p = clf.classify(face)
        assert p.shape == (7,) and np.all(p >= 0)
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert clf._in_buf is buf


def test_batch_matches_single(clf, faces):
    batch = clf.classify_batch(faces, batch_size=2)
    single = np.stack([clf.classify(f) for f in faces])
    np.testing.assert_allclose(batch, single, atol=1e-6)


@pytest.mark.parametrize("face", [np.zeros((48, 48), np.float32), np.zeros((40, 48), np.uint8),
                                  np.zeros((48, 48, 3), np.uint8)])
def test_classify_rejects_wrong_input(clf, face):
    with pytest.raises(ValueError):
        clf.classify(face)


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(RelaxdError, match="nothing.tflite: model file not found"):
        EmotionClassifier(tmp_path / "nothing.tflite")


def test_corrupt_model_names_the_file(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(RelaxdError, match="bad.tflite") as err:
        load_interpreter(bad)
    assert "\n" not in str(err.value)


def test_spec_labels_must_match(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(default_model(), model)
    model.with_suffix(".json").write_text(json.dumps({"labels": list(reversed(EMOTIONS))}))
    with pytest.raises(RelaxdError, match="m.json"):
        EmotionClassifier(model)
    model.with_suffix(".json").write_text("{not json")
    with pytest.raises(RelaxdError, match="m.json"):
        EmotionClassifier(model)


def test_shipped_model_on_real_happy_faces(clf):
    root = fer2013_dir()
    if root is None:
        pytest.skip("FER2013 not found: set RELAXD_FER2013 or put it at ../shared/fer2013")
    from relaxd.commands.evaluate import load_folder

    data = load_folder(root / "val")
    pick = np.flatnonzero(data.labels == EMOTIONS.index("happy"))[:100]
    probs = clf.classify_batch(data.images[pick])
    positive = MOODS.index(Mood.POSITIVE)
    assert (MOOD_INDEX[probs.argmax(axis=1)] == positive).mean() > 0.6


@pytest.fixture(scope="module")
def val_faces():
    from relaxd.commands.evaluate import load_folder

    root = fer2013_dir()
    if root is None:
        pytest.skip("FER2013 not found ($RELAXD_FER2013 or ../shared/fer2013)")
    return load_folder(root / "val", size=48)


@pytest.mark.parametrize("delegate", ["none", "xnnpack"])
def test_this_runtime_gives_the_reference_answers_within_the_tolerance(val_faces, delegate):
    """The shipped model's top-1 on val under this runtime and delegate against tflite-runtime
    2.14's built-in kernels (tests/data/val_reference_top1.json): XNNPACK's int8 kernels round
    some ties differently, so agreement is held to AGREEMENT_MIN, accuracy to
    ACCURACY_TOLERANCE points."""
    assert hashlib.sha256(default_model().read_bytes()).hexdigest() == REFERENCE["model_sha256"], \
        "the shipped model changed: regenerate tests/data/val_reference_top1.json"
    clf = EmotionClassifier(default_model(), num_threads=2, delegate=delegate)
    top1 = clf.classify_batch(val_faces.images).argmax(-1)
    reference = np.array([int(c) for c in REFERENCE["top1"]])
    assert len(top1) == REFERENCE["n"]
    agreement = float((top1 == reference).mean())
    accuracy = float((top1 == val_faces.labels).mean())
    assert agreement >= AGREEMENT_MIN, (clf.runtime, agreement)
    assert abs(accuracy - REFERENCE["accuracy7"]) * 100 <= ACCURACY_TOLERANCE, (clf.runtime, accuracy)


def test_the_delegate_is_explicit_and_named():
    rt = runtime()
    assert rt.name == "ai-edge-litert"
    none = EmotionClassifier(default_model(), delegate="none")
    assert none.runtime == f"{rt.name} {rt.version}, built-in kernels"
    default = EmotionClassifier(default_model())
    assert default.runtime == f"{rt.name} {rt.version}, XNNPACK"
    for gone in ("fast", "auto"):
        with pytest.raises(RelaxdError, match=f"unknown delegate '{gone}'"):
            EmotionClassifier(default_model(), delegate=gone)


def test_the_runtimes_info_line_stays_off_stderr():
    code = ("from relaxd.vision.emotion import EmotionClassifier; "
            "from relaxd.core.paths import default_model; "
            "EmotionClassifier(default_model(), delegate='xnnpack')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "INFO: Created" not in done.stderr, done.stderr
