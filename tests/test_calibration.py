"""The calibrated 3-mood decision: bounded, loaded next to the model, reported by evaluate."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from relaxd.commands import evaluate
from relaxd.core.errors import RelaxdError
from relaxd.core.paths import default_model
from relaxd.vision.calibration import (
    MAX_NEGATIVE_SHIFT,
    STRONG_NEGATIVE,
    MoodCalibration,
    bounded_negative,
    calibration_path,
    decision_rates,
    fit_calibration,
    load_calibration,
    split_halves,
)
from tests.conftest import fer2013_dir


def test_calibration_lowers_a_mild_negative_but_never_a_strong_one():
    cal = MoodCalibration(1.0, (0.2, 1.0, 1.0))
    mild = cal.apply(np.array([0.55, 0.4, 0.05]))
    assert mild[0] < 0.55 and mild.sum() == pytest.approx(1.0)
    assert mild[0] >= 0.55 - MAX_NEGATIVE_SHIFT - 1e-9
    for strong in (STRONG_NEGATIVE, 0.9, 0.99):
        p = np.array([strong, 1 - strong, 0.0])
        assert cal.apply(p)[0] == pytest.approx(strong)


def test_bounded_negative_keeps_within_the_shift_and_normalises():
    raw = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    out = bounded_negative(raw, np.array([[0.1, 0.6, 0.3], [0.2, 0.7, 0.1]]))
    assert out[0, 0] == pytest.approx(0.7 - MAX_NEGATIVE_SHIFT)
    assert out[1, 0] == pytest.approx(0.2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out[0, 1] / out[0, 2] == pytest.approx(2.0)


def test_identity_is_the_plain_argmax():
    rng = np.random.default_rng(1)
    views = [rng.dirichlet(np.ones(7), 50) for _ in range(2)]
    from relaxd.core.labels import mood_probs

    plain = np.argmax(mood_probs(np.mean(views, axis=0)), axis=1)
    np.testing.assert_array_equal(MoodCalibration().decide(views), plain)


def test_fit_meets_the_recall_floor_and_split_is_stratified():
    rng = np.random.default_rng(0)
    labels3 = rng.integers(0, 3, 600)
    split = split_halves(labels3, seed=3)
    for m in range(3):
        assert abs(split[labels3 == m].sum() - (labels3 == m).sum() / 2) <= 1
    # faces whose negative probability leans high: calibration must lower it
    logits = np.eye(7)[[0, 4, 3]][labels3] * 1.5 + rng.normal(0, 1.2, (600, 7))
    logits[:, [0, 1, 2, 5]] += 0.6
    probs7 = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cal = fit_calibration([probs7], labels3, min_recall=0.8)
    after = decision_rates(cal.decide([probs7]), labels3)
    before = decision_rates(MoodCalibration().decide([probs7]), labels3)
    assert after["negative_recall"] >= 0.8
    assert after["neutral_read_negative"] <= before["neutral_read_negative"]


def test_load_calibration_missing_is_identity_and_bad_is_one_line(tmp_path):
    model = tmp_path / "m.tflite"
    assert load_calibration(model).identity
    calibration_path(model).write_text('{"temperature": 50, "weights": [1, 1, 1]}')
    with pytest.raises(RelaxdError, match="out of range"):
        load_calibration(model)
    calibration_path(model).write_text("{")
    with pytest.raises(RelaxdError, match="unreadable"):
        load_calibration(model)


def test_shipped_calibration_loads():
    cal = load_calibration(default_model())
    assert not cal.identity and cal.weights[0] < 1.0


def test_evaluate_json_reports_confusion3_decided(tmp_path, capsys):
    import cv2

    from relaxd.core.labels import EMOTIONS

    rng = np.random.default_rng(0)
    for e in EMOTIONS:
        (tmp_path / e).mkdir()
        cv2.imwrite(str(tmp_path / e / "a.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    assert evaluate.run(parser.parse_args([str(tmp_path), "--json"])) == 0
    report = json.loads(capsys.readouterr().out)
    decided = np.array(report["confusion3_decided"])
    assert decided.shape == (3, 3) and decided.sum() == 7
    assert np.array(report["confusion3"]).sum(axis=1).tolist() == decided.sum(axis=1).tolist()
    assert report["labels3"] == ["negative", "neutral", "positive"]


@pytest.mark.skipif(fer2013_dir() is None, reason="FER2013 not found ($RELAXD_FER2013 or ../shared/fer2013)")
def test_on_val_fewer_neutral_faces_read_negative_on_the_held_out_half():
    from relaxd.commands.calibrate import calibrate_folder

    report = calibrate_folder(fer2013_dir() / "val", default_model())
    before, after = report["holdout_before"], report["holdout_after"]
    # The shipped figures (model card): 25.7 % -> 22.7 % at 80.6 % recall; the goal,
    # 20 % at 80 %, is not reached.
    assert after["neutral_read_negative"] < before["neutral_read_negative"] - 0.02
    assert after["neutral_read_negative"] <= 0.235 and after["negative_recall"] >= 0.8
    crossfit = report["crossfit"]  # every face held out from the calibration that decides it
    assert crossfit["n"] == before["n"] + report["fit"]["n"]
    assert crossfit["neutral_read_negative"] <= 0.225 and crossfit["negative_recall"] >= 0.8
