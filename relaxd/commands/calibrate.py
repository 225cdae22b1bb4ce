"""``relaxd model calibrate DIR``: fit the 3-mood decision's calibration on one half of a
FER-layout folder (FER2013 val) and report it on the other half, with the model's built-in
kernels (as the model card's figures), and cross-fitted (each half decided by a calibration
fitted on the other); ``--write`` stores it next to the model."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from relaxd.core.labels import MOOD_INDEX
from relaxd.vision.calibration import (
    MoodCalibration,
    calibration_path,
    decision_rates,
    fit_calibration,
    split_halves,
)


def calibrate_folder(folder: str | Path, model: str | Path, seed: int = 0,
                     min_recall: float = 0.81, num_threads: int = 2) -> dict:
    """Fit on one half of a FER-layout folder, report before/after on the other half."""
    from relaxd.commands.evaluate import load_folder
    from relaxd.vision.emotion import EmotionClassifier

    classifier = EmotionClassifier(model, num_threads=num_threads, delegate="none")
    data = load_folder(folder, size=classifier.input_size)
    views = [classifier.classify_batch(data.images),
             classifier.classify_batch(data.images[:, :, ::-1])]
    labels3 = MOOD_INDEX[data.labels]
    fit = split_halves(labels3, seed)
    calibration = fit_calibration([v[fit] for v in views], labels3[fit], min_recall)
    held = [v[~fit] for v in views]
    decided_held = calibration.decide(held)
    return {"calibration": asdict(calibration), "seed": seed, "min_recall_on_fit": min_recall,
            "crossfit": crossfit_rates(views, labels3, fit, decided_held, min_recall),
            "fit": decision_rates(calibration.decide([v[fit] for v in views]), labels3[fit]),
            "holdout_before": decision_rates(MoodCalibration().decide(held), labels3[~fit]),
            "holdout_after": decision_rates(decided_held, labels3[~fit]),
            "holdout_before_one_view": decision_rates(MoodCalibration().decide(held[:1]),
                                                      labels3[~fit])}


def crossfit_rates(views: list[np.ndarray], labels3: np.ndarray, fit: np.ndarray,
                   decided_held: np.ndarray, min_recall: float) -> dict:
    """Every face decided by a calibration fitted on the other half (the held-out half as
    ``decided_held`` by the one fitted on the fitting half, and the fitting half by one fitted
    on the held-out half): the method's figure on all faces, each held out, steadier than one
    half's."""
    swapped = fit_calibration([v[~fit] for v in views], labels3[~fit], min_recall)
    decided = np.empty(len(labels3), dtype=np.int64)
    decided[~fit] = decided_held
    decided[fit] = swapped.decide([v[fit] for v in views])
    return {**decision_rates(decided, labels3), "swapped_calibration": asdict(swapped)}


def configure(parser: argparse.ArgumentParser) -> None:
    """``relaxd model calibrate DIR``."""
    from relaxd.core.paths import default_model

    parser.add_argument("dir", type=Path, metavar="DIR", help="FER-layout folder (FER2013 val)")
    parser.add_argument("--model", type=Path, default=default_model(), help="int8 TFLite model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fit / held-out split")
    parser.add_argument("--write", action="store_true",
                        help="write <model>.calibration.json next to the model")


def run(args: argparse.Namespace) -> int:
    report = calibrate_folder(args.dir, args.model, seed=args.seed)
    print(json.dumps(report, indent=1))
    if args.write:
        path = calibration_path(args.model)
        path.write_text(json.dumps({**report["calibration"], "fitted": report}, indent=1) + "\n")
        print(f"wrote {path}")
    return 0
