"""REST and gRPC clients for a keras_skipae model served by TensorFlow Serving.

Standalone: needs numpy (and Pillow to read image files); gRPC also needs
``tensorflow-serving-api`` (which brings grpcio and TensorFlow). It does not
need keras_skipae.

The client reads the served signature from TF Serving's model metadata and
checks images before sending them (dtype, rank, height, width, channels), so
a bad request fails here with a message naming the expected signature instead
of an error from deep inside the server's graph.

    python export/tfserving/client.py cat.png dog.png --model classifier              # REST, port 8501
    python export/tfserving/client.py cat.png --model classifier --protocol grpc      # gRPC, port 8500
    python export/tfserving/client.py street.png --model segmenter --save out/        # writes the mask

From Python::

    from client import rest_predict
    outputs = rest_predict(images_uint8, model="classifier")   # {"probabilities": ..., "class_id": ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
INPUT_NAME = "images"
_DTYPES = {"DT_UINT8": "uint8", "DT_FLOAT": "float32", "DT_INT32": "int32", "DT_INT64": "int64"}


# --------------------------------------------------------------------------- the signature
def signature_from_metadata(metadata: dict, signature: str = DEFAULT_SIGNATURE) -> dict:
    """The input and outputs of ``signature`` from TF Serving's metadata JSON.

    ``metadata`` is the body of ``GET /v1/models/<model>/metadata`` (or the
    ``signature_def`` map converted with ``MessageToDict``). Returns
    ``{"signature", "input": {"name", "dtype", "shape"}, "outputs": {name: {...}}}``
    with ``None`` for dynamic dimensions.
    """
    defs = metadata.get("metadata", metadata).get("signature_def", {})
    defs = defs.get("signature_def", defs)
    if signature not in defs:
        raise ValueError(f"the served model has no signature {signature!r}; it has: {', '.join(sorted(defs))}")
    sig = defs[signature]

    def tensor(info: dict) -> dict:
        dims = info.get("tensor_shape", info.get("tensorShape", {})).get("dim", [])
        shape = [None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims]
        return {"dtype": _DTYPES.get(info["dtype"], info["dtype"]), "shape": shape}

    inputs = sig.get("inputs", {})
    if len(inputs) != 1:
        raise ValueError(f"signature {signature!r} has inputs {sorted(inputs)}; this client sends one image tensor")
    (name, info), = inputs.items()
    return {
        "signature": signature,
        "input": {"name": name, **tensor(info)},
        "outputs": {k: tensor(v) for k, v in sorted(sig.get("outputs", {}).items())},
    }


def describe(spec: dict) -> str:
    inp = spec["input"]
    dims = ", ".join(["batch"] + ["any" if d is None else str(d) for d in inp["shape"][1:]])
    return f"signature {spec['signature']} expects {inp['name']}: {inp['dtype']} [{dims}]"


def check_images(images, spec: dict) -> np.ndarray:
    """``images`` as a batch the signature accepts, or ValueError naming the expected signature.

    A single ``[height, width, channels]`` image gets a batch axis; a grayscale
    ``[height, width]`` image gets a channel axis when the model takes one channel.
    """
    expected = describe(spec)
    inp = spec["input"]
    array = np.asarray(images)
    if array.ndim == 2 and inp["shape"][-1] == 1:
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"{expected}; got an array of shape {array.shape} (rank {array.ndim})")
    if array.dtype != np.dtype(inp["dtype"]):
        hint = " (send raw pixels as uint8, e.g. np.asarray(PIL.Image.open(path)))" if inp["dtype"] == "uint8" else ""
        raise ValueError(f"{expected}; got dtype {array.dtype}{hint}")
    for axis, name in ((1, "height"), (2, "width"), (3, "channels")):
        want = inp["shape"][axis] if len(inp["shape"]) == 4 else None
        if want is not None and array.shape[axis] != want:
            raise ValueError(f"{expected}; got {name} {array.shape[axis]} (array shape {array.shape})")
    if 0 in array.shape:
        raise ValueError(f"{expected}; got an empty array of shape {array.shape}")
    return array


# --------------------------------------------------------------------------- REST
def _url(host: str, port: int, model: str, version: int | None, verb: str = "") -> str:
    version_part = f"/versions/{version}" if version is not None else ""
    return f"http://{host}:{port}/v1/models/{model}{version_part}{verb}"


def _http(url: str, body: dict | None = None, timeout: float = 30.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise RuntimeError(f"TF Serving answered {exc.code} for {url}: {detail}") from None


def rest_metadata(host: str = "localhost", port: int = 8501, model: str = "classifier", version: int | None = None) -> dict:
    """TF Serving's metadata JSON of ``model`` (its signatures)."""
    return _http(_url(host, port, model, version, "/metadata"))


def rest_request(images: np.ndarray, signature: str = DEFAULT_SIGNATURE) -> dict:
    """The ``:predict`` JSON body in row format: one ``instances`` entry per image."""
    return {"signature_name": signature, "instances": np.asarray(images).tolist()}


def parse_rest_response(body: dict, spec: dict) -> dict:
    """``{"predictions": [...]}`` back to ``{output name: array}`` (batch first)."""
    if "error" in body:
        raise RuntimeError(f"TF Serving error: {body['error']}")
    predictions = body["predictions"]
    names = list(spec["outputs"])
    if predictions and isinstance(predictions[0], dict):
        return {k: np.asarray([p[k] for p in predictions], dtype=spec["outputs"][k]["dtype"]) for k in names}
    (name,) = names  # a single output comes back without its name
    return {name: np.asarray(predictions, dtype=spec["outputs"][name]["dtype"])}


def rest_predict(
    images,
    host: str = "localhost",
    port: int = 8501,
    model: str = "classifier",
    signature: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    spec: dict | None = None,
) -> dict:
    """Check ``images``, POST them to ``:predict`` and return ``{output name: array}``."""
    spec = spec or signature_from_metadata(rest_metadata(host, port, model, version), signature)
    batch = check_images(images, spec)
    body = _http(_url(host, port, model, version, ":predict"), rest_request(batch, signature))
    return parse_rest_response(body, spec)


# --------------------------------------------------------------------------- gRPC
def predict_request(images: np.ndarray, model: str = "classifier", signature: str = DEFAULT_SIGNATURE,
                    version: int | None = None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` carrying ``images``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(np.asarray(images)))
    return request


def parse_predict_response(response) -> dict:
    """A ``PredictResponse`` back to ``{output name: array}``."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_metadata(stub, model: str, version: int | None = None, timeout: float = 30.0) -> dict:
    """TF Serving's signatures of ``model`` over gRPC, as the same dict as the REST metadata."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    response = stub.GetModelMetadata(request, timeout)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)}


def grpc_stub(host: str = "localhost", port: int = 8500):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"{host}:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def grpc_predict(
    images,
    host: str = "localhost",
    port: int = 8500,
    model: str = "classifier",
    signature: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    spec: dict | None = None,
    timeout: float = 30.0,
) -> dict:
    """Check ``images``, send a ``PredictRequest`` and return ``{output name: array}``."""
    stub = grpc_stub(host, port)
    spec = spec or signature_from_metadata(grpc_metadata(stub, model, version, timeout), signature)
    batch = check_images(images, spec)
    return parse_predict_response(stub.Predict(predict_request(batch, model, signature, version), timeout))


# --------------------------------------------------------------------------- command line
def read_image(path: Path, channels: int | None) -> np.ndarray:
    from PIL import Image

    image = Image.open(path)
    if channels == 1:
        image = image.convert("L")
    elif channels == 3:
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array  # grayscale: [height, width, 1]


def stack_images(arrays: list, paths: list) -> np.ndarray:
    """One batch from images of one size; images of different sizes are an error naming the files."""
    sizes = {}
    for array, path in zip(arrays, paths):
        sizes.setdefault(tuple(array.shape), []).append(str(path))
    if len(sizes) > 1:
        shown = "; ".join(f"{h}x{w}x{c}: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}"
                          for (h, w, c), files in sizes.items())
        raise ValueError(f"the images are not all one size ({shown}); one request holds images of one size: "
                         "resize them first or send them in separate requests")
    return np.stack(arrays)


def summarise(outputs: dict, paths: list, save: Path | None) -> None:
    for i, path in enumerate(paths):
        line = {"image": str(path)}
        if "class_id" in outputs:
            line["class_id"] = int(outputs["class_id"][i])
            line["probability"] = float(outputs["probabilities"][i].max())
        if "mask" in outputs:
            counts = np.bincount(outputs["mask"][i].ravel())
            line["pixels_per_class"] = {int(c): int(n) for c, n in enumerate(counts) if n}
        if save is not None and ("mask" in outputs or "reconstruction" in outputs):
            from PIL import Image

            save.mkdir(parents=True, exist_ok=True)
            if "mask" in outputs:
                array, suffix = outputs["mask"][i].astype(np.uint8), "mask"
            else:
                array, suffix = np.clip(np.rint(outputs["reconstruction"][i]), 0, 255).astype(np.uint8), "reconstruction"
            target = save / f"{Path(path).stem}_{suffix}.png"
            Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array).save(target)
            line["saved"] = str(target)
        print(json.dumps(line))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Query a keras_skipae model served by TensorFlow Serving.")
    parser.add_argument("images", nargs="+", type=Path, help="image files (all of the model's size, unless a segmenter)")
    parser.add_argument("--model", default="classifier", help="the served model name (MODEL_NAME / models.config name)")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=None, help="default 8501 for REST, 8500 for gRPC")
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE)
    parser.add_argument("--version", type=int, default=None, help="a specific version (default: the served latest)")
    parser.add_argument("--save", type=Path, default=None, help="write masks / reconstructions as PNG files here")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (OSError, ValueError, urllib.error.URLError) as exc:  # files, images, the server: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - gRPC's errors carry their own details
        if type(exc).__module__.startswith("grpc"):
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            print(f"error: gRPC: {details}", file=sys.stderr)
            return 2
        raise


def _run(args) -> int:
    if args.protocol == "rest":
        port = args.port or 8501
        spec = signature_from_metadata(rest_metadata(args.host, port, args.model, args.version), args.signature)
    else:
        port = args.port or 8500
        spec = signature_from_metadata(grpc_metadata(grpc_stub(args.host, port), args.model, args.version), args.signature)
    images = stack_images([read_image(p, spec["input"]["shape"][-1]) for p in args.images], args.images)
    predict = rest_predict if args.protocol == "rest" else grpc_predict
    outputs = predict(images, args.host, port, args.model, args.signature, args.version, spec=spec)
    summarise(outputs, args.images, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
