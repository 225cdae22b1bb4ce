"""relaxd model evaluate: metrics on a hand-made case, folder loading, output, error paths."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from relaxd.commands import evaluate
from relaxd.core.errors import RelaxdError
from relaxd.core.labels import EMOTIONS, MOOD_INDEX
from relaxd.core.paths import default_model
from relaxd.vision.emotion import EmotionClassifier


def test_classification_metrics_hand_made_case():
    # 3 classes; true 0,0,0,1,1,2 ; predicted 0,0,1,1,2,2
    m = evaluate.classification_metrics(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert m["precision"] == pytest.approx([1.0, 1 / 2, 1 / 2])
    f1 = [2 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert m["f1"] == pytest.approx(f1)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["support"] == [3, 2, 1]


def test_macro_f1_ignores_absent_classes_and_handles_no_predictions():
    m = evaluate.classification_metrics(np.array([0, 0, 1]), np.array([0, 0, 0]), 4)
    assert m["recall"] == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)


def test_evaluation_report_moods_use_summed_probabilities():
    # True "fear" (negative). argmax7 says happy (0.3) but negative moods sum to 0.6.
    probs = np.zeros((1, 7))
    probs[0, EMOTIONS.index("happy")] = 0.3
    for e in ("angry", "fear", "sad"):
        probs[0, EMOTIONS.index(e)] = 0.2
    probs[0, EMOTIONS.index("neutral")] = 0.1
    r = evaluate.evaluation_report(np.array([EMOTIONS.index("fear")]), probs)
    assert r["accuracy7"] == 0.0
    assert r["accuracy3"] == 1.0
    assert r["confusion3"][MOOD_INDEX[EMOTIONS.index("fear")]] == [1, 0, 0]
    assert set(r["per_class_recall7"]) == set(EMOTIONS)


def _write_folder(root: Path, per_class: int = 2, classes=EMOTIONS) -> Path:
    rng = np.random.default_rng(0)
    for e in classes:
        (root / e).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / e / f"{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return root


def test_load_folder_counts_unreadable_and_resizes(tmp_path):
    root = _write_folder(tmp_path / "d")
    (root / "happy" / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(root / "sad" / "big.png"), np.zeros((96, 80), np.uint8))
    (root / "sad" / "notes.txt").write_text("ignored")
    data = evaluate.load_folder(root)
    assert data.images.shape == (2 * 7 + 1, 48, 48)
    assert [p.name for p in data.unreadable] == ["broken.png"]
    assert np.bincount(data.labels).tolist() == [2, 2, 2, 2, 2, 3, 2]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "not a folder"),
    (lambda p: (p / "e").mkdir() or p / "e", "expected sub-folders"),
    (lambda p: (p / "w" / "cats").mkdir(parents=True) or p / "w", "found cats"),
    (lambda p: (p / "x" / "happy").mkdir(parents=True) or p / "x", "no readable images"),
])
def test_load_folder_errors_are_one_line(tmp_path, make, message):
    with pytest.raises(RelaxdError, match=message) as err:
        evaluate.load_folder(make(tmp_path))
    assert "\n" not in str(err.value)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    return parser.parse_args(list(argv))


def test_run_json_with_shipped_model(tmp_path, capsys):
    root = _write_folder(tmp_path / "d", per_class=1)
    (root / "angry" / "bad.jpg").write_bytes(b"")
    assert evaluate.run(_args(str(root), "--json", "--model", str(default_model()))) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("accuracy7", "accuracy3", "macro_f1_7", "macro_f1_3", "per_class_recall7",
                "confusion7", "confusion3", "n", "unreadable"):
        assert key in report
    assert report["n"] == 7 and report["unreadable"] == 1
    assert np.array(report["confusion7"]).sum() == 7
    assert np.array(report["confusion3"]).shape == (3, 3)


def test_mirror_averages_each_face_with_its_mirror_image(tmp_path, capsys):
    root = _write_folder(tmp_path / "d", per_class=2)
    assert evaluate.run(_args(str(root), "--json", "--mirror")) == 0
    report = json.loads(capsys.readouterr().out)
    data = evaluate.load_folder(root)
    clf = EmotionClassifier(default_model(), num_threads=2, delegate="none")  # as evaluate runs
    probs = (clf.classify_batch(data.images) + clf.classify_batch(data.images[:, :, ::-1].copy())) / 2
    assert not np.allclose(probs, clf.classify_batch(data.images))  # mirroring changes them
    assert report["mirror"] is True
    assert report == {**report, **evaluate.evaluation_report(data.labels, probs)}
    assert evaluate.evaluate_folder(root, default_model())["mirror"] is False


def test_run_table(tmp_path, capsys):
    root = _write_folder(tmp_path / "d", per_class=1, classes=("happy", "sad"))
    assert evaluate.run(_args(str(root))) == 0
    out = capsys.readouterr().out
    assert "accuracy (7 emotions)" in out and "recall" in out and "negative" in out


def test_run_missing_model_names_the_file(tmp_path):
    root = _write_folder(tmp_path / "d", per_class=1)
    with pytest.raises(RelaxdError, match="nope.tflite"):
        evaluate.run(_args(str(root), "--model", str(tmp_path / "nope.tflite")))


def test_plots(tmp_path):
    report = evaluate.evaluation_report(np.arange(7), np.eye(7))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(RelaxdError, match="matplotlib"):
            evaluate.save_plots(report, tmp_path / "plots")
        return
    paths = evaluate.save_plots(report, tmp_path / "plots")
    assert [p.name for p in paths] == ["confusion7.png", "confusion3.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_run_with_plots_writes_and_names_the_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plots needs matplotlib (relaxd[plots])")
    root = _write_folder(tmp_path / "d", per_class=1)
    assert evaluate.run(_args(str(root), "--plots", str(tmp_path / "p"))) == 0
    out = capsys.readouterr().out
    for name in ("confusion7.png", "confusion3.png"):
        assert f"wrote {tmp_path / 'p' / name}" in out
        assert (tmp_path / "p" / name).stat().st_size > 1000
