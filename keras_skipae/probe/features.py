"""Frozen features and the two ways of scoring them: a linear probe and k-NN.

Features are the encoder's output (``keras_skipae.encoder_model``) pooled over
height and width, so every checkpoint of an architecture yields a vector of
``widths[-1]`` numbers (twice that with ``pooling="avgmax"``). The linear probe
is a multinomial logistic regression fitted by L-BFGS (scipy) on standardised
features, its L2 penalty chosen on a held-back fifth of the labelled set; it is
deterministic, so differences between checkpoints are differences between
features, not between optimiser runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from scipy import optimize, special

from ..choices import POOLINGS
from ..models import encoder_model
from ..models.encoder import ENCODER_PREFIX

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def feature_model(model: keras.Model, pooling: str = "avg") -> keras.Model:
    """A model from ``model``'s input to its pooled encoder features.

    >>> f = feature_model(ks.build("autoencoder", "tiny"))   # (batch, 16)
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
    enc = encoder_model(model)
    x = enc.output
    if pooling == "avg":
        y = keras.layers.GlobalAveragePooling2D(name="probe_avg")(x)
    elif pooling == "max":
        y = keras.layers.GlobalMaxPooling2D(name="probe_max")(x)
    elif pooling == "avgmax":
        y = keras.layers.Concatenate(name="probe_avgmax")(
            [keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)]
        )
    else:
        y = keras.layers.Flatten(name="probe_flatten")(x)
    return keras.Model(enc.inputs, y, name=model.name + "_features")


def stage_layer_names(arch) -> list[str]:
    """The layer whose output is each encoder stage's output (after its down-sampling), stage 1 first."""
    names = []
    for s in range(1, len(arch.widths) + 1):
        if arch.downsample == "maxpool":
            names.append(f"{ENCODER_PREFIX}pool{s}")
        else:
            names.append(f"{ENCODER_PREFIX}conv{s * arch.convs_per_stage}_act")
    return names


def stage_feature_model(model: keras.Model, grid: int = 1) -> tuple[keras.Model, list[str]]:
    """A model from ``model``'s input to every encoder stage's pooled features, and the outputs' names.

    Each stage gives ``stageS`` (global average pooling) and, with ``grid`` > 1,
    ``stageS_gridG``: the feature map averaged over a ``grid`` x ``grid`` grid of
    cells (area resampling) and flattened, which keeps where a feature is.

    >>> fm, names = stage_feature_model(ae, grid=2)   # names: stage1, stage1_grid2, stage2, stage2_grid2
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    outputs, names = [], []
    for s, layer in enumerate(stage_layer_names(model.arch), start=1):
        x = model.get_layer(layer).output
        outputs.append(keras.layers.GlobalAveragePooling2D(name=f"probe_stage{s}_avg")(x))
        names.append(f"stage{s}")
        if grid > 1:
            cells = keras.layers.Resizing(grid, grid, interpolation="area", name=f"probe_stage{s}_grid")(x)
            outputs.append(keras.layers.Flatten(name=f"probe_stage{s}_grid_flat")(cells))
            names.append(f"stage{s}_grid{grid}")
    return keras.Model(model.inputs, outputs, name=model.name + "_stage_features"), names


def features_and_reconstruction(model: keras.Model, pooling: str = "avg") -> keras.Model:
    """One model with two outputs, ``[reconstruction, pooled features]``, so a probe runs one predict per input.

    >>> recon, feats = features_and_reconstruction(autoencoder).predict(x)
    """
    fm = feature_model(model, pooling)
    return keras.Model(model.inputs, [model.output, fm.output], name=model.name + "_probe")


def extract_features(model: keras.Model, images: np.ndarray, pooling: str = "avg", batch_size: int = 256) -> np.ndarray:
    """Pooled encoder features of normalised ``images`` (N, H, W, C) -> (N, D) float32.

    >>> feats = extract_features(autoencoder, x_normalised)
    """
    fm = feature_model(model, pooling)
    return np.asarray(fm.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    return (train - mean) / std, (test - mean) / std


def _fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, max_iter: int) -> np.ndarray:
    """Multinomial logistic regression weights (D + 1, C), bias in the last row."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1), x.dtype)]).astype(np.float64)
    onehot = np.eye(num_classes)[y]
    reg = np.ones((d + 1, 1))
    reg[-1] = 0.0  # no penalty on the bias

    def loss_and_grad(w_flat):
        w = w_flat.reshape(d + 1, num_classes)
        logits = xb @ w
        logp = logits - special.logsumexp(logits, axis=1, keepdims=True)
        loss = -np.sum(onehot * logp) / n + 0.5 * l2 * np.sum(reg * w * w)
        grad = xb.T @ (np.exp(logp) - onehot) / n + l2 * reg * w
        return loss, grad.ravel()

    w0 = np.zeros((d + 1) * num_classes)
    res = optimize.minimize(loss_and_grad, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(d + 1, num_classes)


def _predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.argmax(x @ w[:-1] + w[-1], axis=1)


@dataclass
class ProbeResult:
    """Accuracy of a linear probe, with the L2 penalty it chose."""

    accuracy: float
    l2: float


def _check_labelled(train_x, train_y, test_x, test_y, where: str) -> None:
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(f"{where}: features and labels differ in length ({len(train_x)}/{len(train_y)}, "
                         f"{len(test_x)}/{len(test_y)})")
    if len(train_x) < 2 or len(test_x) < 1:
        raise ValueError(f"{where}: needs at least 2 labelled and 1 held-out example; got "
                         f"{len(train_x)} and {len(test_x)}")


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    l2: float | None = None,
    max_iter: int = 300,
    seed: int = 0,
) -> ProbeResult:
    """Fit a softmax classifier on frozen features; return its held-out accuracy.

    ``l2=None`` picks the penalty from ``L2_GRID`` on a seeded fifth of the
    labelled set, then refits on all of it.

    >>> linear_probe_accuracy(f_train, y_train, f_test, y_test).accuracy
    0.81
    """
    _check_labelled(train_features, train_labels, test_features, test_labels, "linear_probe_accuracy")
    train_labels = np.asarray(train_labels, dtype=np.int64).ravel()
    test_labels = np.asarray(test_labels, dtype=np.int64).ravel()
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    xtr, xte = _standardise(np.asarray(train_features, np.float64), np.asarray(test_features, np.float64))
    if l2 is None:
        perm = np.random.default_rng(seed).permutation(len(xtr))
        n_val = max(1, len(xtr) // 5)
        val, fit = perm[:n_val], perm[n_val:]
        scores = []
        for candidate in L2_GRID:
            w = _fit_logistic(xtr[fit], train_labels[fit], num_classes, candidate, max_iter)
            scores.append(np.mean(_predict_logistic(w, xtr[val]) == train_labels[val]))
        l2 = L2_GRID[int(np.argmax(scores))]  # first best: the smallest penalty among ties
    w = _fit_logistic(xtr, train_labels, num_classes, l2, max_iter)
    return ProbeResult(float(np.mean(_predict_logistic(w, xte) == test_labels)), float(l2))


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int = 10,
    chunk: int = 1024,
) -> float:
    """Cosine k-nearest-neighbour accuracy (majority vote, ties to the nearer class).

    Features are centred on the labelled set's mean, then L2-normalised.

    >>> knn_accuracy(f_train, y_train, f_test, y_test, k=10)
    0.78
    """
    _check_labelled(train_features, train_labels, test_features, test_labels, "knn_accuracy")
    train_labels = np.asarray(train_labels, dtype=np.int64).ravel()
    test_labels = np.asarray(test_labels, dtype=np.int64).ravel()
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    mean = np.asarray(train_features, np.float32).mean(axis=0)

    def unit(f):
        f = np.asarray(f, np.float32) - mean
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-8)

    tr, te = unit(train_features), unit(test_features)
    k = max(1, min(k, len(tr)))
    correct = 0
    for start in range(0, len(te), chunk):
        sim = te[start : start + chunk] @ tr.T
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(sim, idx, axis=1)
        votes = np.zeros((len(sim), num_classes), np.float64)
        rows = np.arange(len(sim))[:, None]
        # one vote per neighbour; the similarity (< 1) only breaks ties
        np.add.at(votes, (rows, train_labels[idx]), 1.0 + 1e-3 * top_sim)
        correct += int(np.sum(np.argmax(votes, axis=1) == test_labels[start : start + chunk]))
    return correct / len(te)
