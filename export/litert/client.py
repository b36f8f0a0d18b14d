"""Run a keras_skipae LiteRT export (.tflite) with the ai-edge-litert interpreter.

Standalone: needs numpy and ai-edge-litert (and Pillow to read image files);
not TensorFlow, not keras_skipae. The model's one signature tells the client
what to send (``images``: uint8 pixels ``[batch, H, W, C]`` for the default
export, float32 normalised images for ``signature="normalised"``). Height and
width are fixed in a LiteRT graph; the batch is not: the interpreter's input is
resized to each batch. Images are checked before the run, so a bad input
fails with a message naming the expected input.

    python export/litert/client.py exported/litert/classifier/1/model.tflite cat.png dog.png
    python export/litert/client.py exported/litert/segmenter/1/model.tflite street.png --save out/

From Python::

    from client import load_model, predict
    model = load_model("model.tflite", threads=2)
    outputs = predict(model, images_uint8)        # {"probabilities": ..., "class_id": ...}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


class LiteRTModel:
    """The interpreter of a ``.tflite`` file with its one signature's input and output tensors."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        (self.signature,) = self.interpreter.get_signature_list()
        runner = self.interpreter.get_signature_runner(self.signature)
        (self.input,) = runner.get_input_details().values()
        self.input_name = next(iter(runner.get_input_details()))
        self.outputs = runner.get_output_details()
        del runner  # it holds views of the tensors; allocate_tensors refuses while they live
        self.interpreter.allocate_tensors()
        self.allocated = tuple(self.input["shape"])


def load_model(path: str | Path, threads: int | None = None) -> LiteRTModel:
    """A LiteRT interpreter for ``path`` (``threads``: CPU threads, default the interpreter's choice)."""
    return LiteRTModel(path, threads)


def input_spec(model: LiteRTModel) -> dict:
    """``{"name", "dtype", "shape"}`` of the model's one input (None for the dynamic batch axis)."""
    return {
        "name": model.input_name,
        "dtype": np.dtype(model.input["dtype"]).name,
        "shape": [None if d < 0 else int(d) for d in model.input["shape_signature"]],
    }


def check_images(images, spec: dict) -> np.ndarray:
    """``images`` as a batch the model accepts, or ValueError naming the expected input."""
    dims = ", ".join(["batch"] + ["any" if d is None else str(d) for d in spec["shape"][1:]])
    expected = f"the LiteRT model expects {spec['name']}: {spec['dtype']} [{dims}]"
    array = np.asarray(images)
    if array.ndim == 2 and spec["shape"][-1] == 1:
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"{expected}; got an array of shape {array.shape} (rank {array.ndim})")
    if array.dtype != np.dtype(spec["dtype"]):
        raise ValueError(f"{expected}; got dtype {array.dtype}")
    for axis, name in ((1, "height"), (2, "width"), (3, "channels")):
        want = spec["shape"][axis]
        if want is not None and array.shape[axis] != want:
            raise ValueError(f"{expected}; got {name} {array.shape[axis]} (array shape {array.shape})")
    return array


def predict(model: LiteRTModel, images) -> dict:
    """Check ``images``, resize the interpreter to their batch if needed, run it: ``{output name: array}``."""
    batch = check_images(images, input_spec(model))
    interpreter = model.interpreter
    if batch.shape != model.allocated:
        interpreter.resize_tensor_input(model.input["index"], list(batch.shape), strict=True)
        interpreter.allocate_tensors()
        model.allocated = batch.shape
    interpreter.set_tensor(model.input["index"], np.ascontiguousarray(batch))
    interpreter.invoke()
    return {name: interpreter.get_tensor(details["index"]) for name, details in model.outputs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run a keras_skipae LiteRT model on image files.")
    parser.add_argument("model", type=Path, help="the .tflite file written by `skipae export --format litert`")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the interpreter's choice)")
    parser.add_argument("--save", type=Path, default=None, help="write masks / reconstructions as PNG files here")
    args = parser.parse_args(argv)

    from PIL import Image

    model = load_model(args.model, args.threads)
    spec = input_spec(model)
    if spec["dtype"] != "uint8":
        parser.error(f"{args.model} takes normalised float32 input; export with the default signature to send pixels")
    height, width, channels = spec["shape"][1:]
    mode = {1: "L", 3: "RGB"}.get(channels)
    arrays = []
    for path in args.images:
        image = Image.open(path).convert(mode) if mode else Image.open(path)
        if image.size != (width, height):
            parser.error(f"{path} is {image.size[0]}x{image.size[1]}; the LiteRT model takes {width}x{height} images")
        arrays.append(np.asarray(image, np.uint8))
    images = np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])  # grayscale: [height, width, 1]
    outputs = predict(model, images)
    for i, path in enumerate(args.images):
        line = {"image": str(path)}
        if "class_id" in outputs:
            line.update(class_id=int(outputs["class_id"][i]), probability=float(outputs["probabilities"][i].max()))
        for key in ("mask", "reconstruction"):
            if key in outputs and args.save is not None:
                array = np.clip(np.rint(outputs[key][i]), 0, 255).astype(np.uint8)
                args.save.mkdir(parents=True, exist_ok=True)
                target = args.save / f"{path.stem}_{key}.png"
                Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array).save(target)
                line["saved"] = str(target)
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
