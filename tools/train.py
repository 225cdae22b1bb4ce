"""Train the emotion CNN on FER2013: ``python tools/train.py --data DIR_OR_CSV --out runs/NAME``.

Trains on the ``train`` split and selects the checkpoint on ``val`` (PublicTest) only.
Every epoch writes ``OUT/last.keras`` (weights + optimizer), ``OUT/state.json`` (epoch,
history, best) and, when val accuracy improves, ``OUT/best.keras``; ``--resume`` continues
from ``last.keras``. Augmentation (flip, rotation, zoom, shift, brightness/contrast,
random erasing) uses stateless random ops seeded by (seed, step), and the data order by
(seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
Class imbalance is met with per-class loss weights (``--class-weights``) and label smoothing.

``--mood-loss W`` adds a 3-mood term (the chair decides on moods, not emotions): the seven
probabilities are summed per mood (``relaxd.core.labels``) and the mood cross-entropy is added with
weight W; ``--nn-loss W`` adds the neutral-versus-negative confusion the chair suffers most
from: for neutral and negative faces, the binary cross-entropy of
p(negative) / (p(negative) + p(neutral)), the two moods weighted equally in total (neutral faces
are the fewer). ``--keep-epochs`` keeps every epoch's weights (``OUT/epoch_N.keras``), to pick
one by the calibrated decision afterwards.

``--swa-start N`` adds stochastic weight averaging (Izmailov et al., 2018): the learning rate
decays to ``--swa-lr`` by epoch N and stays there, and from epoch N on the weights at the end
of each epoch are averaged (``OUT/swa.npz``). The average, with its batch-norm statistics
measured anew on training images, is scored on val every epoch like the trained weights,
and becomes ``best.keras`` when it scores higher.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from fer_data import load_split  # noqa: E402

from relaxd.core.labels import EMOTIONS, MOOD_INDEX  # noqa: E402

SWA_BN_IMAGES = 8192  # training images on which a weight average's batch norms are measured


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path,
                   help="FER2013 folder (train/ and val/ of class folders) or fer2013.csv")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log)")
    p.add_argument("--arch", default="relaxnet", help="relaxnet (default), model1, model2, tiny")
    p.add_argument("--widths", default="16,32,72,144",
                   help="relaxnet: channels of its four stages, comma-separated")
    p.add_argument("--head", type=int, default=256, help="relaxnet: channels of its last conv")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.02)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--class-weights", choices=("none", "sqrt", "balanced"), default="sqrt",
                   help="loss weight per class: none, 1/sqrt(freq) or 1/freq (normalized)")
    p.add_argument("--erase-prob", type=float, default=0.5, help="random erasing probability")
    p.add_argument("--swa-start", type=int, default=0,
                   help="average the weights of this epoch and every later one (0 = off)")
    p.add_argument("--swa-lr", type=float, default=2e-4,
                   help="the constant learning rate from --swa-start on")
    p.add_argument("--mood-loss", type=float, default=0.0,
                   help="weight of the 3-mood cross-entropy (summed probabilities) added")
    p.add_argument("--nn-loss", type=float, default=0.0,
                   help="weight of the neutral-vs-negative binary term added")
    p.add_argument("--keep-epochs", action="store_true", help="keep OUT/epoch_N.keras")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0 = all cores)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from the weights of an earlier run folder (its best.keras), "
                        "with a fresh optimizer and LR schedule (a warm restart)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.keras (same --data/--epochs; the LR schedule is saved)")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps (smoke tests)")
    return p.parse_args(argv)


def class_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    """Per-class loss weights, normalized so the mean weight over training samples is 1."""
    counts = np.bincount(labels, minlength=len(EMOTIONS)).astype(np.float64)
    freq = counts / counts.sum()
    safe = np.maximum(counts, 1) / counts.sum()
    w = {"none": np.ones_like(freq), "sqrt": safe ** -0.5, "balanced": 1.0 / safe}[mode]
    return (w / (w * freq).sum()).astype(np.float32)


def mood_terms(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mood matrix 7x3, each class's mood, neutral-vs-negative sample weight per class)``:
    the matrix sums emotion probabilities per mood; the weights give the negative and the
    neutral faces of training the same total weight in the binary term (other moods 0)."""
    mood = MOOD_INDEX
    matrix = np.eye(3, dtype=np.float32)[mood]
    counts = np.bincount(mood[labels], minlength=3).astype(np.float64)
    nn = np.zeros(len(EMOTIONS), np.float32)
    pair = counts[0] + counts[1]
    for c, m in enumerate(mood):
        if m in (0, 1) and counts[m]:
            nn[c] = pair / (2 * counts[m])
    return matrix, mood.astype(np.int64), nn


def make_augment(erase_prob: float):
    """Batch augmentation ``augment(x, seed) -> x`` on (B, 48, 48, 1) float images in [0, 1]."""
    import tensorflow as tf

    def uniform(shape, seed, i, lo, hi):
        return tf.random.stateless_uniform(shape, seed + tf.constant([0, i], tf.int64) * 7919, lo, hi)

    def augment(x, seed):
        b = tf.shape(x)[0]
        size = tf.cast(tf.shape(x)[1], tf.float32)
        flip = uniform([b, 1, 1, 1], seed, 1, 0.0, 1.0) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        # Affine: rotation +-12 deg, zoom 0.9..1.1, shift +-10 %, about the centre.
        angle = uniform([b], seed, 2, -12.0, 12.0) * (math.pi / 180)
        scale = uniform([b], seed, 3, 0.9, 1.1)
        tx = uniform([b], seed, 4, -0.1, 0.1) * size
        ty = uniform([b], seed, 5, -0.1, 0.1) * size
        c = (size - 1) / 2
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        a2 = c - cos * c + sin * c - tx
        b2 = c - sin * c - cos * c - ty
        zeros = tf.zeros_like(cos)
        transforms = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=tf.shape(x)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
        # Brightness and contrast.
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast = uniform([b, 1, 1, 1], seed, 6, 0.8, 1.2)
        bright = uniform([b, 1, 1, 1], seed, 7, -0.1, 0.1)
        x = tf.clip_by_value((x - mean) * contrast + mean + bright, 0.0, 1.0)
        # Random erasing: one rectangle of 2..20 % of the image, aspect 0.3..3.3, noise-filled.
        area = uniform([b], seed, 8, 0.02, 0.2) * size * size
        log_r = uniform([b], seed, 9, math.log(0.3), math.log(3.3))
        h = tf.minimum(tf.sqrt(area * tf.exp(log_r)), size)
        w = tf.minimum(tf.sqrt(area / tf.exp(log_r)), size)
        y0 = uniform([b], seed, 10, 0.0, 1.0) * (size - h)
        x0 = uniform([b], seed, 11, 0.0, 1.0) * (size - w)
        on = uniform([b], seed, 12, 0.0, 1.0) < erase_prob
        grid = tf.range(size)
        in_y = (grid[None, :] >= y0[:, None]) & (grid[None, :] < (y0 + h)[:, None])
        in_x = (grid[None, :] >= x0[:, None]) & (grid[None, :] < (x0 + w)[:, None])
        mask = in_y[:, :, None] & in_x[:, None, :] & on[:, None, None]
        noise = tf.random.stateless_uniform(tf.shape(x), seed + tf.constant([0, 13], tf.int64))
        return tf.where(mask[..., None], noise, x)

    return augment


def update_bn(model, images_u8: np.ndarray, batch_size: int = 256) -> None:
    """Set every batch norm's moving mean and variance to their average over ``images_u8``
    in training mode (batch statistics), as stochastic weight averaging needs."""
    from keras import layers

    bns = [la for la in model.layers if isinstance(la, layers.BatchNormalization)]
    momentum = [bn.momentum for bn in bns]
    for bn in bns:
        bn.moving_mean.assign(np.zeros(bn.moving_mean.shape, np.float32))
        bn.moving_variance.assign(np.ones(bn.moving_variance.shape, np.float32))
    for k, start in enumerate(range(0, len(images_u8), batch_size)):
        for bn in bns:  # moving = moving * k/(k+1) + batch/(k+1): the running mean
            bn.momentum = k / (k + 1)
        model(images_u8[start:start + batch_size, ..., None].astype(np.float32) / 255.0, training=True)
    for bn, m in zip(bns, momentum):
        bn.momentum = m


def write_state(path: Path, state: dict) -> None:
    """Write a run's ``state.json`` atomically (a crash leaves the old one or the new one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _log(path: Path, line: str) -> None:
    print(line, flush=True)
    with open(path, "a") as f:
        f.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import keras
    import tensorflow as tf

    from models import ARCHS, count_macs, relaxnet

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.arch not in ARCHS:
        raise SystemExit(f"unknown --arch {args.arch!r}; choose from {', '.join(ARCHS)}")
    keras.utils.set_random_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "train.log"
    state_path = out / "state.json"

    t0 = time.time()
    x_train, y_train = load_split(args.data, "train")
    x_val, y_val = load_split(args.data, "val")
    x_val_f = (x_val.astype(np.float32) / 255.0)[..., None]
    weights = class_weights(y_train, args.class_weights)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)

    if args.resume:
        if not (out / "last.keras").is_file():
            raise SystemExit(f"--resume: {out / 'last.keras'} not found")
        state = json.loads(state_path.read_text())
        model = keras.models.load_model(out / "last.keras")
        optimizer = model.optimizer
        state.setdefault("resumed", []).append(shlex.join([os.path.basename(sys.executable), *sys.argv]))
        _log(log, f"resumed at epoch {state['epoch']} (best val acc {state['best_val_acc']:.4f})")
    else:
        parent = None
        if args.init:
            parent = json.loads((args.init / "state.json").read_text())
            model = keras.models.load_model(args.init / "best.keras", compile=False)
            args.arch = parent["arch"]
        elif args.arch == "relaxnet":
            model = relaxnet(tuple(int(w) for w in args.widths.split(",")), args.head)
        else:
            model = ARCHS[args.arch]()
        # Cosine decay to 0 at the end, or to --swa-lr at --swa-start and flat after.
        decay_end = (args.swa_start - 1 if args.swa_start else args.epochs) * steps_per_epoch
        warmup = int(args.warmup_epochs * steps_per_epoch)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=args.lr / 100, decay_steps=max(decay_end - warmup, 1),
            alpha=args.swa_lr / args.lr if args.swa_start else 0.0,
            warmup_target=args.lr, warmup_steps=warmup)
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=args.weight_decay)
        model.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
        state = {
            "epoch": 0, "best_val_acc": -1.0, "best_epoch": 0, "history": [],
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
            "args": {k: str(v) for k, v in vars(args).items()},
            "arch": args.arch, "params": int(model.count_params()), "macs": count_macs(model),
            "train_seconds": 0.0, "n_train": int(len(x_train)), "n_val": int(len(x_val)),
            "class_weights": weights.tolist(), "seed": args.seed,
        }
        if parent:
            # The chain of runs this one continues, oldest first, so the model card can
            # give every command and the total training time.
            state["init"] = [*parent.get("init", []), {
                "command": parent["command"], "epochs": parent["best_epoch"],
                **({"swa_epochs": parent["best_swa"]} if "best_swa" in parent else {}),
                "train_seconds": sum(h["seconds"] for h in parent["history"][:parent["best_epoch"]]),
                "best_val_acc": parent["best_val_acc"]}]
            state["args"]["widths"] = parent["args"].get("widths", args.widths)
            state["args"]["head"] = parent["args"].get("head", str(args.head))
            _log(log, f"initialised from {args.init / 'best.keras'} "
                      f"(val acc {parent['best_val_acc']:.4f} at epoch {parent['best_epoch']})")
        _log(log, f"{args.arch}: {state['params']:,} params, {state['macs'] / 1e6:.1f} M MACs; "
                  f"{len(x_train)} train / {len(x_val)} val images; class weights "
                  + " ".join(f"{e}={w:.2f}" for e, w in zip(EMOTIONS, weights)))

    augment = make_augment(args.erase_prob)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing,
                                                   reduction=None)
    class_w = tf.constant(weights)
    mood_matrix, class_mood, nn_w = (tf.constant(a) for a in mood_terms(y_train))

    def mood_loss(probs, y):
        """The added 3-mood terms (0 unless --mood-loss / --nn-loss)."""
        p3 = tf.clip_by_value(tf.matmul(probs, mood_matrix), 1e-7, 1.0)
        y3 = tf.gather(class_mood, y)
        ce3 = -tf.math.log(tf.gather(p3, y3, batch_dims=1))
        share_neg = p3[:, 0] / (p3[:, 0] + p3[:, 1])
        is_neg = tf.cast(tf.equal(y3, 0), tf.float32)
        bce = -(is_neg * tf.math.log(share_neg) + (1 - is_neg) * tf.math.log(1 - share_neg + 1e-7))
        return (args.mood_loss * tf.reduce_mean(ce3)
                + args.nn_loss * tf.reduce_mean(bce * tf.gather(nn_w, y)))

    @tf.function
    def train_step(x_u8, y, seed):
        x = augment(tf.cast(x_u8, tf.float32)[..., None] / 255.0, seed)
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_sample = loss_fn(tf.one_hot(y, len(EMOTIONS)), probs)
            loss = tf.reduce_mean(per_sample * tf.gather(class_w, y))
            if args.mood_loss or args.nn_loss:
                loss += mood_loss(probs, y)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, tf.reduce_mean(tf.cast(tf.argmax(probs, -1) == y, tf.float32))

    @tf.function
    def predict_step(x):
        return model(x, training=False)

    def val_accuracy() -> float:
        preds = [np.argmax(predict_step(x_val_f[i:i + 512]).numpy(), -1)
                 for i in range(0, len(x_val_f), 512)]
        return float((np.concatenate(preds) == y_val).mean())

    swa_path = out / "swa.npz"
    swa: list[np.ndarray] = []
    swa_n = 0
    if args.swa_start and swa_path.is_file():
        with np.load(swa_path) as f:
            swa_n = int(f["n"])
            swa = [f[f"w{i}"] for i in range(len(f.files) - 1)]
    # Batch-norm statistics of the weight average are measured on this fixed sample.
    bn_sample = x_train[np.random.default_rng(args.seed).permutation(len(x_train))[:SWA_BN_IMAGES]]

    def average_in(trained: list[np.ndarray]) -> float:
        """Add ``trained`` to the running weight average, load the average into the model
        (batch norm re-measured) and return its val accuracy."""
        nonlocal swa, swa_n
        swa = [(a * swa_n + w) / (swa_n + 1) for a, w in zip(swa, trained)] if swa_n else trained
        swa_n += 1
        np.savez(out / "swa.tmp.npz", n=swa_n, **{f"w{i}": w for i, w in enumerate(swa)})
        os.replace(out / "swa.tmp.npz", swa_path)
        model.set_weights(swa)
        update_bn(model, bn_sample)
        return val_accuracy()

    _log(log, f"data loaded in {time.time() - t0:.0f} s; {steps_per_epoch} steps/epoch")
    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        t_epoch = time.time()
        order = np.random.default_rng([args.seed, epoch]).permutation(len(x_train))
        loss_sum = acc_sum = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            seed = tf.constant([args.seed, epoch * 1_000_000 + step], tf.int64)
            loss, acc = train_step(x_train[idx], y_train[idx], seed)
            loss_sum += float(loss)
            acc_sum += float(acc)
            if step % 20 == 0 or step == steps_per_epoch - 1:
                done = (step + 1) / steps_per_epoch
                rate = (step + 1) * args.batch_size / (time.time() - t_epoch)
                print(f"\repoch {epoch}/{args.epochs} [{'#' * int(done * 30):<30}] "
                      f"loss {loss_sum / (step + 1):.4f} acc {acc_sum / (step + 1):.4f} "
                      f"{rate:.0f} img/s", end="", flush=True)
        print(flush=True)
        val_acc = val_accuracy()
        seconds = time.time() - t_epoch
        state["train_seconds"] += seconds
        lr = float(optimizer.learning_rate)
        record = {"epoch": epoch, "loss": loss_sum / steps_per_epoch,
                  "train_acc": acc_sum / steps_per_epoch, "val_acc": val_acc, "lr": lr,
                  "seconds": seconds}
        state["history"].append(record)
        state["epoch"] = epoch
        model.save(out / "last.keras.tmp.keras")
        os.replace(out / "last.keras.tmp.keras", out / "last.keras")
        if args.keep_epochs:
            model.save(out / f"epoch_{epoch}.keras")
        best = val_acc > state["best_val_acc"]
        if best:
            state["best_val_acc"], state["best_epoch"] = val_acc, epoch
            state.pop("best_swa", None)
            model.save(out / "best.keras")
        if args.swa_start and epoch >= args.swa_start:
            trained = model.get_weights()
            record["swa_val_acc"] = swa_acc = average_in(trained)
            if swa_acc > state["best_val_acc"]:
                best = True
                state["best_val_acc"], state["best_epoch"] = swa_acc, epoch
                state["best_swa"] = [epoch - swa_n + 1, epoch]
                model.save(out / "best.keras")
            model.set_weights(trained)
        write_state(state_path, state)
        _log(log, f"epoch {epoch}/{args.epochs} loss {record['loss']:.4f} "
                  f"train_acc {record['train_acc']:.4f} val_acc {val_acc:.4f}"
                  + (f" swa_val_acc {record['swa_val_acc']:.4f}" if "swa_val_acc" in record else "")
                  + f"{' *best*' if best else ''} lr {lr:.2e} {seconds:.0f} s")
    _log(log, f"done: best val acc {state['best_val_acc']:.4f} at epoch {state['best_epoch']}; "
              f"{state['train_seconds'] / 60:.1f} min training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
