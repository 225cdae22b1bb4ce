"""Write ``tests/data/val_reference_top1.json``: the shipped model's top-1 on every FER2013 val
face under the runtime's built-in kernels (ai-edge-litert's give tflite-runtime 2.14's answers),
the reference every delegate is held to (``tests/test_emotion.py``). Run it after each export:

``python tools/reference_top1.py --data ../shared/fer2013``
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from relaxd.commands.evaluate import load_folder
from relaxd.core.paths import default_model
from relaxd.vision.emotion import EmotionClassifier

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "val_reference_top1.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="FER2013 folder (with val/)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    clf = EmotionClassifier(default_model(), num_threads=2, delegate="none")
    if not clf.runtime.endswith("built-in kernels"):
        raise SystemExit(f"the reference is the built-in kernels', not {clf.runtime}")
    val = load_folder(args.data / "val", size=clf.input_size)
    top1 = clf.classify_batch(val.images).argmax(-1)
    args.out.write_text(json.dumps({
        "about": "top-1 emotion index of each FER2013 val face (sorted class folders, sorted "
                 "files) by the shipped model under the built-in kernels: the "
                 "reference every runtime and delegate is held to",
        "runtime": clf.runtime,
        "model_sha256": hashlib.sha256(default_model().read_bytes()).hexdigest(),
        "n": int(len(top1)),
        "accuracy7": round(float((top1 == val.labels).mean()), 6),
        "top1": "".join(str(int(c)) for c in top1)}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
