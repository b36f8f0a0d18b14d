"""The online probe: feature quality measured during pre-training, so the best epoch is chosen by it.

Reconstruction error says little about how well features separate classes
(Alberti et al., arXiv 1712.01655). :class:`OnlineProbe` fits, every ``every``
epochs, a linear probe and a k-NN classifier on the encoder's pooled features
of a small labelled set and scores them on held-out labelled images; it adds
``val_probe_accuracy`` and ``val_probe_knn_accuracy`` to the epoch's logs
(history, TensorBoard) and the time it took as ``probe_seconds``. With
``monitor: val_probe_accuracy`` a pre-training stage keeps the epoch whose
features probe best, not the one that reconstructs best.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from .features import feature_model, knn_accuracy, linear_probe_accuracy


class OnlineProbe(keras.callbacks.Callback):
    """Linear-probe and k-NN accuracy of the model's encoder features every ``every`` epochs (and the last).

    ``train_x``/``test_x``: normalised images (N, H, W, C); ``train_y``/``test_y``:
    integer labels. ``l2``: the probe's penalty; None chooses it at the first
    probed epoch on a fifth of the labelled set (as
    :func:`~keras_skipae.probe.features.linear_probe_accuracy`) and keeps it for
    the later ones, so every epoch is scored by the same probe and costs one fit.
    Epochs between probes log nothing, so a checkpoint that monitors the probe
    only compares the epochs that were probed.

    >>> probe = OnlineProbe(x_lab, y_lab, x_held, y_held, every=2)
    >>> model.fit(x, x, epochs=10, callbacks=[probe])   # history has val_probe_accuracy
    """

    def __init__(self, train_x, train_y, test_x, test_y, *, every: int = 1, pooling: str = "avg",
                 knn_k: int = 10, l2: float | None = None, batch_size: int = 256, seed: int = 0):
        super().__init__()
        if every < 1:
            raise ValueError(f"OnlineProbe: every must be >= 1, got {every}")
        self.train_x, self.test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
        self.train_y = np.asarray(train_y, np.int64).ravel()
        self.test_y = np.asarray(test_y, np.int64).ravel()
        if len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y):
            raise ValueError("OnlineProbe: images and labels differ in length")
        self.every, self.pooling, self.knn_k, self.l2 = int(every), pooling, int(knn_k), l2
        self.batch_size, self.seed = int(batch_size), int(seed)
        self._features = None
        self.seconds: list[float] = []

    def on_train_begin(self, logs=None):
        # shares the model's layers: the features are always the current weights'
        self._features = feature_model(self.model, self.pooling)

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is probed: every ``every``-th and the last."""
        epochs = (self.params or {}).get("epochs")
        return (epoch + 1) % self.every == 0 or (epochs is not None and epoch + 1 == epochs)

    def measure(self) -> dict:
        """``{"val_probe_accuracy", "val_probe_knn_accuracy"}`` of the current weights."""
        if self._features is None:
            self._features = feature_model(self.model, self.pooling)
        f_train = self._predict(self.train_x)
        f_test = self._predict(self.test_x)
        linear = linear_probe_accuracy(f_train, self.train_y, f_test, self.test_y, l2=self.l2, seed=self.seed)
        self.l2 = linear.l2  # chosen once, then the same probe for every epoch
        knn = knn_accuracy(f_train, self.train_y, f_test, self.test_y, k=self.knn_k)
        return {"val_probe_accuracy": linear.accuracy, "val_probe_knn_accuracy": knn}

    def _predict(self, images):
        # Keras's traced predict loop, built once per feature model and reused every probed epoch
        return np.asarray(self._features.predict(images, batch_size=self.batch_size, verbose=0), np.float32)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.due(epoch):
            return
        started = time.perf_counter()
        logs.update(self.measure())
        self.seconds.append(time.perf_counter() - started)
        logs["probe_seconds"] = self.seconds[-1]
        logs["probe_l2"] = self.l2  # recorded, so a resumed stage scores its later epochs with the same probe
