"""Prove an export computes what the Keras model computes.

:class:`ParityRunner` runs an artefact (through whatever runtime loads it:
``tf.saved_model.load``, a TF1 session as TF Serving loads it
(:class:`serving_session`), onnxruntime, the LiteRT interpreter) and the Keras
model on the same inputs: fresh random images, odd sizes for the segmenter, and
``sample_images`` when given. Probabilities, logits and reconstructions must
agree to :data:`FLOAT_TOLERANCE` (in the model's output units) and labels to
:data:`LABEL_AGREEMENT`; the figures go to a :class:`ParityReport`.

Example::

    with ParityRunner(model, "onnx", "model.onnx") as parity:
        parity.run("serving_default", lambda images: run_my_artefact(images), samples, runtime="onnxruntime")
    if not parity.report.passed:
        raise ParityError(parity.report)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..arch import Arch
from ..kinds import KINDS as REGISTRY
from ..progress import Progress
from .reports import (
    FLOAT_TOLERANCE,
    LABEL_AGREEMENT,
    AccuracyChange,
    ChangeMeasure,
    ExportError,
    ParityCheck,
    ParityReport,
)
from .serving import (
    INPUT_NAME,
    LABEL_OUTPUTS,
    OUTPUTS,
    SIGNATURE_PIXELS,
    describe_input,
    float32_model,
    is_float32,
    mask_dtype,
    model_info,
    signature_spec,
)

PARITY_BATCH = 4


def normalise(images: np.ndarray, arch: Arch) -> np.ndarray:
    """uint8 pixels to the model's float32 input: :meth:`Arch.normalise`."""
    return arch.normalise(images)


def denormalise(y: np.ndarray, arch: Arch) -> np.ndarray:
    """Model units back to pixel units, clipped to 0..255: :meth:`Arch.denormalise`."""
    return arch.denormalise(y)


def reference_outputs(model, signature: str, images: np.ndarray) -> dict:
    """What ``signature`` should return for ``images``, computed with the Keras ``model`` in numpy."""
    kind, arch = model_info(model)
    x = arch.normalise(images) if signature == SIGNATURE_PIXELS else images.astype(np.float32)
    y = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float32)
    spec = REGISTRY[kind]
    if spec.label_outputs:
        scores = next(name for name in spec.serving_outputs if name not in spec.label_outputs)
        out = {scores: y}
        for label, of in spec.label_outputs.items():
            out[label] = out[of].argmax(-1).astype(mask_dtype(arch).as_numpy_dtype if spec.any_size else np.int32)
        return out
    if signature == SIGNATURE_PIXELS:
        y = arch.denormalise(y)
    return {"reconstruction": y}


def check_images(images, spec: dict, signature: str = SIGNATURE_PIXELS) -> np.ndarray:
    """``images`` as an array a signature accepts, or a ValueError naming the expected signature.

    A single image ``[height, width, channels]`` gets a batch axis.

    >>> check_images(np.zeros((32, 32, 3), np.uint8), signature_spec(clf)).shape
    (1, 32, 32, 3)
    """
    expected = describe_input(signature, spec)
    inp = spec[signature]["inputs"][INPUT_NAME]
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"{expected}; got an array of shape {array.shape} (rank {array.ndim})")
    if array.dtype != np.dtype(inp["dtype"]):
        raise ValueError(f"{expected}; got dtype {array.dtype}")
    for axis, name in ((1, "height"), (2, "width"), (3, "channels")):
        want = inp["shape"][axis]
        if want is not None and array.shape[axis] != want:
            raise ValueError(f"{expected}; got {name} {array.shape[axis]} (array shape {array.shape})")
    if array.shape[0] == 0 or 0 in array.shape[1:3]:
        raise ValueError(f"{expected}; got an empty array of shape {array.shape}")
    return array


def prepare_samples(sample_images, spec: dict):
    """``sample_images`` checked against the ``serving_default`` input of ``spec`` (None stays None)."""
    if sample_images is None:
        return None
    try:
        return check_images(sample_images, spec, SIGNATURE_PIXELS)
    except ValueError as exc:
        raise ValueError(f"sample_images do not fit the model: {exc}") from None


def spread(n: int, limit: int) -> np.ndarray:
    """``min(n, limit)`` indices evenly spaced over ``range(n)`` (all of them when ``n <= limit``): a folder
    sorted by class, or an array sorted by label, gives images of every class, not of the first."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def load_sample_images(path: str | os.PathLike, limit: int = 8) -> np.ndarray:
    """Up to ``limit`` uint8 images from a ``.npy``/``.npz`` array or a folder of image files, evenly spaced
    over the array or the sorted file list.

    Folder images must share one size; they are decoded with ``tf.io.decode_image``.

    >>> samples = load_sample_images("cifar_samples/")
    """
    path = Path(path)
    if path.suffix in (".npy", ".npz"):
        data = np.load(path)
        if path.suffix == ".npz":
            data = data["images"] if "images" in data.files else data[data.files[0]]
        data = np.asarray(data)
        return data[spread(len(data), limit)]
    if not path.is_dir():
        raise FileNotFoundError(f"sample images {path}: expected a .npy/.npz file or a folder of images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif"))
    if not files:
        raise FileNotFoundError(f"no .png/.jpg/.bmp/.gif images under {path}")
    files = [files[i] for i in spread(len(files), limit)]
    images = [tf.io.decode_image(p.read_bytes(), expand_animations=False).numpy() for p in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"sample images under {path} have different shapes {sorted(shapes)}; give images of one size")
    return np.stack(images)


class ParityRunner:
    """Runs an artefact and the Keras model on the same inputs and records the checks in :attr:`report`.

    A mixed-precision model is compared through its float32 twin (what the
    graph computes); the segmenter at sizes other than its own through a twin
    that takes any size. ``input_size=(height, width)``: the artefact takes
    only that size (LiteRT), so every input set has it. Used as a context
    manager, it shows one progress line for the whole check when that takes
    more than a couple of seconds.
    """

    def __init__(self, model, fmt: str, artefact: str, seed: int | None = None, *, input_size: tuple | None = None):
        kind, arch = model_info(model)
        self.kind, self.arch = kind, arch
        self.input_size = tuple(input_size) if input_size is not None else None
        self.spec = signature_spec(model, input_size)
        mixed = not is_float32(model)
        self.native = float32_model(model) if mixed else model
        self.dynamic = float32_model(model, dynamic_spatial=True) if REGISTRY[kind].any_size else None
        reference = "the Keras model" + (
            " re-built in float32 with the same weights (the model computes in mixed precision)" if mixed else ""
        )
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.report = ParityReport(format=fmt, artefact=artefact, reference=reference, seed=self.seed)
        self.progress = Progress(f"parity check of the {fmt} export", unit="input sets")

    def __enter__(self) -> ParityRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.progress.close()

    def input_sets(self, signature: str, sample_images) -> list:
        """(label, images, reference model) triples: random at the native size, odd sizes, samples."""
        h, w = self.input_size or self.arch.input_shape[:2]
        c = self.arch.channels
        sizes = [(h or 32, w or 32)]
        if REGISTRY[self.kind].any_size and self.input_size is None:
            stride = self.arch.total_stride
            sizes.append((sizes[0][0] + stride + 1, sizes[0][1] + 2 * stride - 1))  # not a multiple of the stride
        sets = []
        for hh, ww in sizes:
            pixels = self.rng.integers(0, 256, size=(PARITY_BATCH, hh, ww, c), dtype=np.uint8)
            images = pixels if signature == SIGNATURE_PIXELS else self.arch.normalise(pixels)
            sets.append((f"random {images.dtype} {'x'.join(map(str, images.shape))}", images, self._reference(hh, ww)))
        if sample_images is not None:
            images = sample_images if signature == SIGNATURE_PIXELS else self.arch.normalise(sample_images)
            model = self._reference(*images.shape[1:3])
            sets.append((f"{len(images)} sample images {'x'.join(map(str, images.shape[1:]))}", images, model))
        return sets

    def _reference(self, height: int, width: int):
        native = (height, width) == tuple(self.arch.input_shape[:2])
        return self.native if native or self.dynamic is None else self.dynamic

    def run(self, signature: str, call: Callable[[np.ndarray], dict], sample_images=None, runtime: str = "") -> None:
        """Compare ``call(images)`` (``{output name: array}``) with the Keras model on every input set."""
        for label, images, model in self.input_sets(signature, sample_images):
            got = call(images)
            want = reference_outputs(model, signature, images)
            for output in OUTPUTS[self.kind]:
                if output not in got:
                    check = ParityCheck(signature, label, output, "missing", math.nan, 0.0, False,
                                        "the artefact has no such output")
                else:
                    check = self._compare(signature, label, output, np.asarray(got[output]), want)
                check.runtime = runtime
                self.report.checks.append(check)
            self.progress.update()

    def measure(self, signature: str, call: Callable[[np.ndarray], dict], sample_images, runtime: str,
                quantize: str) -> AccuracyChange:
        """How far ``call`` (a quantized artefact) moves from the Keras model on every input set.

        Labels: the share that agree; scores: the largest and the mean absolute
        difference, in the output's units. Raises :class:`ExportError` when
        either side produces a non-finite value.
        """
        change = AccuracyChange(self.report.format, self.report.artefact, self.report.reference, quantize, signature,
                                seed=self.seed, runtime=runtime)
        for label, images, model in self.input_sets(signature, sample_images):
            got = call(images)
            want = reference_outputs(model, signature, images)
            for output in OUTPUTS[self.kind]:
                if output not in got:
                    raise ExportError(f"the {quantize} {self.report.format} export has no output {output!r}")
                value, ref = np.asarray(got[output]), want[output]
                if value.shape != ref.shape:
                    raise ExportError(
                        f"the {quantize} {self.report.format} export's {output} has shape {value.shape} on {label}, "
                        f"the Keras model's {ref.shape}"
                    )
                if output in LABEL_OUTPUTS:
                    change.measures.append(ChangeMeasure(output, label, "agreement", float((value == ref).mean())))
                    continue
                for side, array in (("export", value), ("Keras model", ref)):
                    if not np.isfinite(array).all():
                        raise ExportError(
                            f"the {quantize} {self.report.format} {self.kind} produces non-finite {output} on {label} "
                            f"({side}); refusing to write it to {self.report.artefact}"
                        )
                diff = np.abs(value.astype(np.float64) - ref.astype(np.float64))
                units = _units(output, signature)
                change.measures.append(ChangeMeasure(output, label, "max_abs_diff", float(diff.max()), units))
                change.measures.append(ChangeMeasure(output, label, "mean_abs_diff", float(diff.mean()), units))
            self.progress.update()
        return change

    def _compare(self, signature, label, output, got, want) -> ParityCheck:
        ref = want[output]
        if got.shape != ref.shape:
            return ParityCheck(signature, label, output, "shape", math.nan, 0.0, False, f"shape {got.shape}, Keras {ref.shape}")
        if output in LABEL_OUTPUTS:
            scores = np.sort(want[LABEL_OUTPUTS[output]], axis=-1)
            tie = (scores[..., -1] - scores[..., -2]) <= FLOAT_TOLERANCE if scores.shape[-1] > 1 else np.zeros(ref.shape, bool)
            decided = ~tie
            agree = float((got == ref)[decided].mean()) if decided.any() else 1.0
            note = f"{int(tie.sum())} near-tied of {tie.size} excluded" if tie.any() else ""
            return ParityCheck(signature, label, output, "agreement", agree, LABEL_AGREEMENT, agree >= LABEL_AGREEMENT, note)
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        note = ""
        if output == "reconstruction" and signature == SIGNATURE_PIXELS:
            # compare in the model's units: pixel differences times pixel_scale / std
            per_channel = np.float64(self.arch.pixel_scale) / np.asarray(self.arch.channel_std(), np.float64)
            note = f"max {diff.max():.3g} in pixel units; compared in the model's normalised units"
            diff = diff * per_channel
        value = float(diff.max()) if diff.size else 0.0
        passed = bool(np.isfinite(got).all()) and value <= FLOAT_TOLERANCE
        return ParityCheck(signature, label, output, "max_abs_diff", value, FLOAT_TOLERANCE, passed, note)


def _units(output: str, signature: str) -> str:
    if output == "reconstruction":
        return "pixel levels (0..255)" if signature == SIGNATURE_PIXELS else "normalised units"
    return {"probabilities": "probability", "logits": "logit"}.get(output, "")


class serving_session:
    """The SavedModel loaded into a TF1-style session, as TF Serving and ``saved_model_cli run`` load it.

    >>> with serving_session(path) as run_signature:
    ...     outputs = run_signature("serving_default", images)
    """

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=graph)
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # the TF1 loader's deprecation notice is not for our users
        try:
            with graph.as_default():
                self.meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(self.path))
        finally:
            logger.setLevel(level)
        return self.run

    def run(self, signature: str, images: np.ndarray) -> dict:
        sig = self.meta.signature_def[signature]
        names = sorted(sig.outputs)
        fetches = [sig.outputs[k].name for k in names]
        return dict(zip(names, self.session.run(fetches, {sig.inputs[INPUT_NAME].name: images})))

    def __exit__(self, *exc):
        self.session.close()
        return False
