"""Rebuild a float relaxnet checkpoint from a shipped int8 TFLite model, to train on from it.

``python tools/from_tflite.py models/emotion_int8.tflite --data FER2013 --out runs/NAME``

A run folder's ``best.keras`` is what ``train.py --init`` warm-restarts from; when that folder
is gone (it is never committed), this writes an equivalent one from the model that shipped:

- each int8 CONV_2D / FULLY_CONNECTED is dequantized (per-channel scales) into the matching
  Keras layer; the converter had folded each batch norm into its conv's weights and bias;
- each batch norm is then set so that it *adds that bias and nothing else* in inference
  mode, with moving mean and variance measured on training images, so that in training mode
  (batch statistics) it also starts close to the shipped function instead of far from it;
- the float model is checked against the int8 one on ``val``, and ``state.json`` records
  the chain of commands (the original training run, then this one) for the model card.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from export import float_probs  # noqa: E402
from fer_data import load_split  # noqa: E402
from train import write_state  # noqa: E402

from relaxd.vision.emotion import EmotionClassifier, load_interpreter, spec_path  # noqa: E402


def reference_interpreter(**kwargs):
    """TensorFlow's TFLite interpreter, built-in kernels only (no XNNPACK delegate).

    tflite_runtime cannot share a process with TensorFlow; this one can. Without the
    delegate its int8 results match tflite_runtime 2.14's exactly (ties included, as the
    tests check), where TensorFlow 2.21's XNNPACK rounds some of them differently.
    """
    import tensorflow as tf

    return tf.lite.Interpreter(
        **kwargs,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def dequantized_layers(model_path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(op, float weights, float bias)`` of each CONV_2D and FULLY_CONNECTED, in graph order.

    Weights keep TFLite's layout: (out, kh, kw, in) for convs, (out, in) for dense layers.
    """
    interp = load_interpreter(model_path, interpreter_cls=reference_interpreter)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}

    def dequantize(index: int) -> np.ndarray:
        q = tensors[index]["quantization_parameters"]
        data = interp.get_tensor(index).astype(np.float64)
        shape = [1] * data.ndim
        if len(q["scales"]) > 1:
            shape[q["quantized_dimension"]] = -1
        return (data - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)

    return [(op["op_name"], dequantize(op["inputs"][1]), dequantize(op["inputs"][2]))
            for op in interp._get_ops_details() if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]


def rebuild(model_path: Path, calib_u8: np.ndarray):
    """A Keras relaxnet computing what the int8 model computes, up to quantization error."""
    import keras
    from keras import layers

    from models import relaxnet

    ops = dequantized_layers(model_path)
    convs = [w.shape[0] for op, w, _ in ops if op == "CONV_2D"]
    if len(convs) != 8 or [op for op, _, _ in ops][-1] != "FULLY_CONNECTED":
        raise SystemExit(f"{model_path}: not a relaxnet (convs {convs})")
    widths, head = (convs[0], convs[1], convs[3], convs[5]), convs[7]
    model = relaxnet(widths, head)
    conv_layers = [la for la in model.layers if isinstance(la, layers.Conv2D)]
    bn_layers = [la for la in model.layers if isinstance(la, layers.BatchNormalization)]
    dense = next(la for la in model.layers if isinstance(la, layers.Dense))
    for layer, bn, (_, w, b) in zip(conv_layers, bn_layers, ops):
        layer.set_weights([w.transpose(1, 2, 3, 0).astype(np.float32)])
        # Identity plus bias until the statistics below are known.
        one = np.ones_like(b, np.float32)
        bn.set_weights([one, b.astype(np.float32), 0 * one, one - bn.epsilon])
    _, w, b = ops[-1]
    dense.set_weights([w.T.astype(np.float32), b.astype(np.float32)])

    # Moving statistics of each conv's output; gamma and beta cancel them in inference mode.
    probe = keras.Model(model.input, [la.output for la in conv_layers])
    outs = float_probs(probe, calib_u8)
    for bn, z, (_, _, b) in zip(bn_layers, outs, ops):
        mean = z.reshape(-1, z.shape[-1]).mean(0)
        var = z.reshape(-1, z.shape[-1]).var(0)
        bn.set_weights([np.sqrt(var + bn.epsilon), mean + b, mean, var])
    return model, widths, head


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="int8 relaxnet .tflite (its .json spec beside it)")
    p.add_argument("--data", required=True, type=Path, help="FER2013 folder or fer2013.csv")
    p.add_argument("--out", required=True, type=Path, help="run folder to write")
    p.add_argument("--stats-images", type=int, default=4096,
                   help="training images for the batch-norm statistics")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="largest mean |probability difference| from the int8 model accepted")
    args = p.parse_args(argv)

    spec = json.loads(spec_path(args.model).read_text())
    x_train, _ = load_split(args.data, "train")
    pick = np.random.default_rng(0).permutation(len(x_train))[:args.stats_images]
    model, widths, head = rebuild(args.model, x_train[pick])

    x_val, y_val = load_split(args.data, "val")
    probs = float_probs(model, x_val)
    ref = EmotionClassifier(args.model, interpreter_cls=reference_interpreter).classify_batch(x_val)
    check = {"val_acc_float": float((probs.argmax(-1) == y_val).mean()),
             "val_acc_int8": float((ref.argmax(-1) == y_val).mean()),
             "same_top1": float((probs.argmax(-1) == ref.argmax(-1)).mean()),
             "max_abs_prob_diff": float(np.abs(probs - ref).max()),
             "mean_abs_prob_diff": float(np.abs(probs - ref).mean())}
    print("rebuilt float model vs the int8 model on val: "
          + ", ".join(f"{k} {v:.4f}" for k, v in check.items()))
    if check["mean_abs_prob_diff"] > args.tolerance:
        raise SystemExit(f"rebuilt model differs from the int8 one: mean |probability difference| "
                         f"{check['mean_abs_prob_diff']:.4f} > {args.tolerance}")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "best.keras")
    train = spec["training"]
    state = {
        "arch": "relaxnet", "epoch": 0, "history": [],
        "best_epoch": 0, "best_val_acc": check["val_acc_float"],
        "command": shlex.join(["python", "tools/from_tflite.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "rebuilt": check,
        "args": {"widths": ",".join(map(str, widths)), "head": str(head)},
        "init": [*train.get("continues", []),
                 {"command": train["command"], "epochs": train["best_epoch"],
                  "train_seconds": train["minutes"] * 60,
                  "best_val_acc": spec["val"]["float"]["accuracy7"]}],
    }
    write_state(args.out / "state.json", state)
    print(f"wrote {args.out / 'best.keras'}; continue with: python tools/train.py --init {args.out} ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
