"""Keras architectures for the emotion model (float input pixel/255, shape (48, 48, 1), softmax out).

- ``model1``: the paper's first baseline, 2 conv + 2 pool + 4 fully connected layers.
- ``model2``: the paper's second baseline, 8 conv + 4 pool + 4 fully connected, batch norm, dropout.
- ``relaxnet`` (default): VGG-style, batch norm, global average pooling, sized for the Pi
  (about 0.8 M parameters, int8 inference under 2 ms on one core).
- ``tiny``: a few thousand parameters, for tests only.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

INPUT_SHAPE = (48, 48, 1)
NUM_CLASSES = 7


def _conv_bn(x, filters: int, kernel: int = 3):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def model1() -> keras.Model:
    """Baseline 1: conv-pool-conv-pool, then four dense layers."""
    inp = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(32, 5, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    for units in (256, 128, 64):
        x = layers.Dense(units, activation="relu")(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inp, out, name="model1")


def model2() -> keras.Model:
    """Baseline 2: four blocks of two conv + BN + pool + dropout, then four dense layers."""
    inp = keras.Input(INPUT_SHAPE)
    x = inp
    for filters in (64, 128, 256, 512):
        x = _conv_bn(x, filters)
        x = _conv_bn(x, filters)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    for units in (512, 256, 128):
        x = layers.Dense(units, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Dropout(0.4)(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inp, out, name="model2")


def relaxnet(widths: tuple[int, ...] = (16, 32, 72, 144), head: int = 256,
             dropout: float = 0.3) -> keras.Model:
    """Default: one conv at 48x48, two convs per stage at 24, 12 and 6 px, one conv at 3 px, GAP.

    Most channels sit at low resolution, where a weight costs few multiply-accumulates:
    about 0.65 M parameters for 31 M MACs, so int8 inference stays under 2 ms on one core.
    """
    inp = keras.Input(INPUT_SHAPE)
    x = _conv_bn(inp, widths[0])
    x = layers.MaxPooling2D()(x)
    for filters in widths[1:]:
        x = _conv_bn(x, filters)
        x = _conv_bn(x, filters)
        x = layers.MaxPooling2D()(x)
    x = _conv_bn(x, head)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inp, out, name="relaxnet")


def tiny() -> keras.Model:
    """For tests: trains in a second."""
    inp = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(4, 3, strides=2, padding="same")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny")


ARCHS: dict[str, Callable[[], keras.Model]] = {
    "relaxnet": relaxnet, "model1": model1, "model2": model2, "tiny": tiny,
}


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass (conv and dense layers)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            macs += h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return int(macs)
