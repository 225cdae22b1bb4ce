"""Score a run's epochs by the chair's calibrated 3-mood decision, on the fitting half of val.

``python tools/select_mood.py runs/NAME --data FER2013``

For every ``epoch_N.keras`` of a run trained with ``--keep-epochs`` (and ``best.keras``), the
float model classifies each val face and its mirror; the calibration is fitted on the fitting
half of val exactly as ``relaxd model calibrate`` splits it (seeded, stratified) and the
decision scored on that same half. The held-out half is never looked at: it gives the final
figure, once, for the epoch chosen here (``relaxd model calibrate`` on the exported model).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from export import float_probs  # noqa: E402
from fer_data import load_split  # noqa: E402

from relaxd.core.labels import MOOD_INDEX  # noqa: E402
from relaxd.vision.calibration import decision_rates, fit_calibration, split_halves  # noqa: E402


def score(model, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0) -> dict:
    """7-class val accuracy (all of val) and the calibrated decision on the fitting half."""
    views = [float_probs(model, x_val), float_probs(model, x_val[:, :, ::-1])]
    labels3 = MOOD_INDEX[y_val]
    fit = split_halves(labels3, seed)
    fitted = [v[fit] for v in views]
    calibration = fit_calibration(fitted, labels3[fit])
    rates = decision_rates(calibration.decide(fitted), labels3[fit])
    return {"val_acc": float((views[0].argmax(-1) == y_val).mean()),
            "fit_neutral_read_negative": rates["neutral_read_negative"],
            "fit_negative_recall": rates["negative_recall"],
            "temperature": calibration.temperature, "weight_negative": calibration.weights[0]}


def main(argv: list[str] | None = None) -> int:
    import keras

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, nargs="+", help="run folder(s) (epoch_N.keras, best.keras)")
    p.add_argument("--data", required=True, type=Path, help="FER2013 folder or fer2013.csv")
    args = p.parse_args(argv)
    x_val, y_val = load_split(args.data, "val")
    for run in args.run:
        paths = sorted(run.glob("epoch_*.keras"), key=lambda q: int(re.findall(r"\d+", q.stem)[0]))
        for path in [*paths, run / "best.keras"]:
            if path.is_file():
                model = keras.models.load_model(path, compile=False)
                print(json.dumps({"checkpoint": str(path), **score(model, x_val, y_val)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
