"""``relaxd model evaluate DIR``: how well the emotion model does on a folder in FER2013 layout.

The folder holds one sub-folder per class named as in :data:`relaxd.core.labels.EMOTIONS`
(``DIR/happy/*.png`` ...). Metrics are computed for the 7 emotions and for the 3 moods
(through :data:`relaxd.core.labels.MOOD_INDEX`, the one emotion -> mood mapping).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relaxd.core.errors import RelaxdError
from relaxd.core.labels import EMOTIONS, MOOD_INDEX, MOODS, mood_probs
from relaxd.core.plotting import pyplot, save_figure

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class Folder:
    """Images of a FER-layout folder: ``images`` uint8 (N, 48, 48), ``labels`` (N,) into EMOTIONS."""

    images: np.ndarray
    labels: np.ndarray
    unreadable: list[Path]


def load_folder(root: str | Path, size: int = 48) -> Folder:
    """Read every image under ``root/<emotion>/`` as gray ``size`` x ``size`` uint8.

    Unreadable files are listed in ``unreadable``, not fatal. A missing folder, one without
    any emotion sub-folder, with an unknown sub-folder or without readable images raises
    :class:`RelaxdError`.
    """
    import cv2

    root = Path(root)
    if not root.is_dir():
        raise RelaxdError("not a folder", root)
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    unknown = [d for d in subdirs if d not in EMOTIONS]
    if unknown or not subdirs:
        raise RelaxdError(
            f"expected sub-folders named after emotions ({', '.join(EMOTIONS)}), "
            f"found {', '.join(unknown or subdirs) or 'none'}", root)
    images, labels, unreadable = [], [], []
    for label, emotion in enumerate(EMOTIONS):
        folder = root / emotion
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None or img.size == 0:
                unreadable.append(path)
                continue
            if img.shape != (size, size):
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            images.append(img)
            labels.append(label)
    if not images:
        raise RelaxdError(f"no readable images in {len(subdirs)} class folder(s)", root)
    return Folder(np.stack(images), np.array(labels, dtype=np.int64), unreadable)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, per-class recall/precision/F1, macro-F1 and the confusion matrix.

    ``confusion[i][j]`` counts samples of true class ``i`` predicted as ``j``. A class with
    no samples (or no predictions) gets recall (precision) 0; macro-F1 averages over the
    classes that occur in ``y_true``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D and of equal length")
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_classes), where=denom > 0)
    present = support > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "recall": recall.tolist(),
        "precision": precision.tolist(),
        "f1": f1.tolist(),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "support": support.tolist(),
        "confusion": confusion.tolist(),
    }


def evaluation_report(y_true7: np.ndarray, probs7: np.ndarray) -> dict:
    """Metrics for the 7 emotions (argmax) and the 3 moods (argmax of the summed mood
    probabilities, as relaxd's mood stage sees them; ``accuracy3_from7`` maps the argmax
    emotion to its mood instead)."""
    y_true7 = np.asarray(y_true7, dtype=np.int64)
    y_pred7 = np.argmax(probs7, axis=1)
    m7 = classification_metrics(y_true7, y_pred7, len(EMOTIONS))
    m3 = classification_metrics(MOOD_INDEX[y_true7], np.argmax(mood_probs(probs7), axis=1), len(MOODS))
    return {
        "n": m7["n"],
        "accuracy7": m7["accuracy"],
        "accuracy3": m3["accuracy"],
        "accuracy3_from7": (float((MOOD_INDEX[y_pred7] == MOOD_INDEX[y_true7]).mean())
                            if len(y_true7) else 0.0),
        "macro_f1_7": m7["macro_f1"],
        "macro_f1_3": m3["macro_f1"],
        "per_class_recall7": dict(zip(EMOTIONS, m7["recall"])),
        "per_class_precision7": dict(zip(EMOTIONS, m7["precision"])),
        "per_class_recall3": dict(zip((m.value for m in MOODS), m3["recall"])),
        "support7": dict(zip(EMOTIONS, m7["support"])),
        "confusion7": m7["confusion"],
        "confusion3": m3["confusion"],
        "labels7": list(EMOTIONS),
        "labels3": [m.value for m in MOODS],
    }


def decided_report(y_true7: np.ndarray, views: list[np.ndarray], model: str | Path) -> dict:
    """``confusion3_decided``: the chair's per-face decision (each view, the face and its mirror,
    calibrated, then averaged, as live; :mod:`relaxd.vision.calibration`), rows true and columns
    decided, order ``labels3``; with its share of neutral faces read negative and its negative
    recall."""
    from relaxd.vision.calibration import decision_rates, load_calibration

    y3 = MOOD_INDEX[np.asarray(y_true7, dtype=np.int64)]
    decided = load_calibration(model).decide(views)
    m3 = classification_metrics(y3, decided, len(MOODS))
    rates = decision_rates(decided, y3)
    return {"confusion3_decided": m3["confusion"], "accuracy3_decided": m3["accuracy"],
            "neutral_read_negative_decided": rates["neutral_read_negative"],
            "negative_recall_decided": rates["negative_recall"]}


def format_confusion(confusion: list[list[int]], labels: list[str]) -> str:
    """A confusion matrix as a text table, rows = true class, columns = predicted, plus recall."""
    width = max(8, *(len(label) + 1 for label in labels))
    lines = ["true \\ pred".ljust(width) + "".join(label[:width - 1].rjust(width) for label in labels)
             + "recall".rjust(8)]
    for label, row in zip(labels, confusion):
        total = sum(row)
        recall = row[labels.index(label)] / total if total else 0.0
        lines.append(label.ljust(width) + "".join(str(v).rjust(width) for v in row)
                     + f"{recall:8.1%}")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """The human-readable table printed by ``relaxd model evaluate``."""
    lines = [
        f"images: {report['n']}" + (f"  (unreadable, skipped: {report['unreadable']})"
                                    if report.get("unreadable") else "")
        + ("  (each averaged with its mirror image)" if report.get("mirror") else "")
        + (f"  [{report['runtime']}]" if report.get("runtime") else ""),
        f"accuracy (7 emotions): {report['accuracy7']:.2%}   macro-F1: {report['macro_f1_7']:.3f}",
        f"accuracy (3 moods):    {report['accuracy3']:.2%}   macro-F1: {report['macro_f1_3']:.3f}"
        f"   (mood of the top emotion: {report['accuracy3_from7']:.2%})",
        "",
        format_confusion(report["confusion7"], report["labels7"]),
        "",
        format_confusion(report["confusion3"], report["labels3"]),
    ]
    if "confusion3_decided" in report:
        lines += ["", f"as the chair decides (calibrated): neutral read negative "
                      f"{report['neutral_read_negative_decided']:.1%}, negative recall "
                      f"{report['negative_recall_decided']:.1%}",
                  format_confusion(report["confusion3_decided"], report["labels3"])]
    return "\n".join(lines)


def save_plots(report: dict, folder: str | Path) -> list[Path]:
    """Confusion-matrix PNGs (7 emotions, 3 moods) in ``folder``; needs matplotlib."""
    plt = pyplot()
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RelaxdError(f"cannot create plot folder ({exc.strerror})", folder) from None
    paths = []
    for key, labels, title in (("confusion7", report["labels7"], "7 emotions"),
                               ("confusion3", report["labels3"], "3 moods")):
        cm = np.asarray(report[key], dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(1 + 0.9 * len(labels), 1 + 0.8 * len(labels)))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = report["accuracy7" if key == "confusion7" else "accuracy3"]
        ax.set_title(f"{title}: accuracy {acc:.1%} (n={report['n']})")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center",
                        fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
        path = folder / f"{key}.png"
        save_figure(fig, path, dpi=120)
        paths.append(path)
    return paths


def evaluate_folder(folder: str | Path, model: str | Path, num_threads: int = 1,
                    mirror: bool = False, delegate: str = "none") -> dict:
    """Run the model on every image of a FER-layout folder; the report of :func:`evaluation_report`
    plus ``unreadable`` (count), ``model``, ``mirror`` and ``runtime`` (which kernels produced the
    figures; by default the built-in ones, the reference answers).

    With ``mirror`` each face's probabilities are averaged with its mirror image's, as the live
    loop's mood smoothing averages them (:class:`relaxd.vision.inputs.VisionInput` mirrors every other face).
    """
    from relaxd.vision.emotion import EmotionClassifier

    classifier = EmotionClassifier(model, num_threads=num_threads, delegate=delegate)
    data = load_folder(folder, size=classifier.input_size)
    views = [classifier.classify_batch(data.images),
             classifier.classify_batch(data.images[:, :, ::-1])]
    report = evaluation_report(data.labels, np.mean(views, axis=0) if mirror else views[0])
    report.update(decided_report(data.labels, views, model))
    report["mirror"] = mirror
    report["unreadable"] = len(data.unreadable)
    report["unreadable_files"] = [str(p) for p in data.unreadable]
    report["model"] = str(model)
    report["runtime"] = classifier.runtime
    return report


def add_delegate_argument(parser: argparse.ArgumentParser, default: str = "none") -> None:
    """``--delegate``: which kernels run the model (see ``relaxd.vision.emotion.DELEGATES``)."""
    from relaxd.vision.emotion import DELEGATES

    parser.add_argument("--delegate", choices=DELEGATES, default=default,
                        help="xnnpack: XNNPACK's int8 kernels, as the chair runs the model; "
                             "none: the built-in kernels, the reference answers "
                             "(default: %(default)s)")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``relaxd model evaluate``'s arguments."""
    from relaxd.core.paths import default_model

    parser.add_argument("dir", type=Path, metavar="DIR",
                        help="folder with one sub-folder of face images per emotion")
    parser.add_argument("--model", type=Path, default=default_model(),
                        help="int8 TFLite emotion model (default: the bundled one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="also write confusion-matrix PNGs here")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    parser.add_argument("--mirror", action="store_true",
                        help="average each face with its mirror image, as the live loop's smoothing does")
    add_delegate_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print; 0 on success (errors raise RelaxdError)."""
    report = evaluate_folder(args.dir, args.model, num_threads=args.threads, mirror=args.mirror,
                             delegate=args.delegate)
    if args.plots:
        report["plots"] = [str(p) for p in save_plots(report, args.plots)]
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
        for path in report.get("unreadable_files", [])[:10]:
            print(f"unreadable: {path}")
        for path in report.get("plots", []):
            print(f"wrote {path}")
    return 0
