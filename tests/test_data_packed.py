"""Packed data (data.pack, `skipae data pack`, packed: sources): round trips, resumable atomic writes, sharding."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from keras_skipae import data
from keras_skipae.cli import main
from keras_skipae.data import DataError


def _folder(root, per_class=7, size=(12, 10)):
    """A folder: tree of PNGs whose first pixel holds the image's number (so elements can be told apart)."""
    rng = np.random.default_rng(0)
    number = 0
    for c in ("a", "b", "c"):
        os.makedirs(root / "train" / c)
        for i in range(per_class):
            x = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            x[0, 0] = (number // 256, number % 256, 7)
            Image.fromarray(x).save(root / "train" / c / f"{i}.png")
            number += 1
    return f"folder:{root}"


def _id(x) -> int:
    return int(x[0, 0, 0]) * 256 + int(x[0, 0, 1])


def _ids(ds) -> list[int]:
    return sorted(_id(x) for x, _ in ds.as_numpy_iterator())


@pytest.mark.parametrize("stream_above", [None, 0], ids=["decoded at load", "streamed"])
def test_a_packed_folder_reads_back_exactly_with_its_classes_statistics_and_splits(tmp_path, stream_above):
    source = _folder(tmp_path / "src")
    meta = data.pack(source, tmp_path / "out", shard_size=4, stream_above=stream_above)
    records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        [str(tmp_path / "out" / s["file"]) for s in meta["splits"]["train"]["shards"]])]  # fmt: skip
    from_file = {ex.features.feature["from_file"].int64_list.value[0] for ex in records}
    assert from_file == {1}, "PNG files are kept as they are, whether the folder was decoded at load or streamed"
    assert meta["splits"]["train"]["num_examples"] == 21
    assert [s["examples"] for s in meta["splits"]["train"]["shards"]] == [4, 4, 4, 4, 4, 1]
    assert meta["splits"]["train"]["class_counts"] == {"0": 7, "1": 7, "2": 7}
    original = data.load(source, "train", stream_above=stream_above)
    packed = data.load(f"packed:{tmp_path / 'out'}", "train")
    assert packed.info.class_names == ("a", "b", "c") and packed.info.image_shape == (12, 10, 3)
    assert packed.cardinality() == 21
    by_id = {_id(x): (x, y) for x, y in original.as_numpy_iterator()}
    read = list(packed.as_numpy_iterator())
    assert len(read) == 21 and sorted(_id(x) for x, _ in read) == sorted(by_id)
    for px, py in read:
        x, y = by_id[_id(px)]
        np.testing.assert_array_equal(x, px)
        assert y == py
    assert [_id(x) for x, _ in read] != sorted(by_id), "packed in a shuffled order"
    # the statistics come from the pack, and equal a pass over the data
    np.testing.assert_allclose(data.compute_stats(packed), data.compute_stats(original), rtol=1e-9)
    # splits and slices read by index from the shards
    s = data.split(packed, labels_per_class=2, val_fraction=0.2, seed=0)
    t = data.split(original, labels_per_class=2, val_fraction=0.2, seed=0)
    for part in ("labelled", "unlabelled", "val"):
        assert _ids(getattr(s, part)) == _ids(getattr(t, part)), part
    first = [_id(x) for x, _ in original.as_numpy_iterator()]
    assert _ids(data.load(f"packed:{tmp_path / 'out'}", "train[5:9]")) == sorted(first[5:9])
    assert "packed:" in data.describe(packed)


def test_segmentation_masks_with_a_large_ignore_label_survive_packing(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (9, 8, 6, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (9, 8, 6)).astype(np.int32)
    masks[:, 0, 0] = 300
    np.savez(tmp_path / "seg.npz", train_images=images, train_masks=masks)
    meta = data.pack(f"npz:{tmp_path / 'seg.npz'}", tmp_path / "out", shard_size=5, ignore_label=300, num_classes=3)
    assert meta["splits"]["train"]["from_file"] == 0  # arrays have no files: their pixels are stored
    ds = data.load(f"packed:{tmp_path / 'out'}", "train")
    assert ds.info.task == "segmentation" and ds.info.ignore_label == 300
    got = list(ds.as_numpy_iterator())
    order = [int(np.flatnonzero((images == x).all(axis=(1, 2, 3)))[0]) for x, _ in got]
    assert sorted(order) == list(range(9))
    np.testing.assert_array_equal(np.stack([x for x, _ in got]), images[order])
    np.testing.assert_array_equal(np.stack([m for _, m in got]), masks[order])


def test_a_rerun_is_a_no_op_another_request_is_refused_and_overwrite_replaces(tmp_path):
    source = _folder(tmp_path / "src")
    data.pack(source, tmp_path / "out", shard_size=8)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    data.pack(source, tmp_path / "out", shard_size=8)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before
    with pytest.raises(DataError, match="another request.*overwrite"):
        data.pack(source, tmp_path / "out", shard_size=5)
    data.pack(source, tmp_path / "out", shard_size=5, overwrite=True)
    assert len(data.pack(source, tmp_path / "out", shard_size=5)["splits"]["train"]["shards"]) == 5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # overwrite replaces an earlier pack, never a folder of something else
        with pytest.raises(DataError, match="not empty and holds no pack"):
            data.pack(source, tmp_path / "other", overwrite=overwrite)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(DataError, match="overlap"):
        data.pack(source, tmp_path / "src" / "packed")
    with pytest.raises(DataError, match="pack whole splits"):
        data.pack(source, tmp_path / "sliced", splits=("train[:50%]",))


def test_a_resumed_pack_of_a_changed_source_is_refused(tmp_path):
    source = _folder(tmp_path / "src")
    out = tmp_path / "out"
    data.pack(source, out, shard_size=8)
    (out / "metadata.json").unlink()  # as if killed before the end
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "src" / "train" / "a" / "new.png")
    with pytest.raises(DataError, match="changed since this pack began \\(21 examples then, 22 now"):
        data.pack(source, out, shard_size=8)


def test_a_reader_refuses_an_unfinished_pack_and_a_truncated_shard(tmp_path):
    source = _folder(tmp_path / "src")
    out = tmp_path / "out"
    data.pack(source, out, shard_size=8)
    shard = out / "train-00000-of-00003.tfrecord"
    (out / "metadata.json").rename(tmp_path / "metadata.json")
    with pytest.raises(DataError, match="unfinished pack.*skipae data pack .* again"):
        data.load(f"packed:{out}", "train")
    (tmp_path / "metadata.json").rename(out / "metadata.json")
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-00000-of-00003.tfrecord has .* bytes.*recorded"):
        data.load(f"packed:{out}", "train")
    shard.unlink()
    with pytest.raises(DataError, match="is missing"):
        data.load(f"packed:{out}", "train")
    with pytest.raises(DataError, match="no split 'test'; this pack holds train"):
        data.load(f"packed:{out}", "test")
    with pytest.raises(DataError, match="ignore_label=3, but the pack was made with ignore_label=None"):
        data.load(f"packed:{out}", "train", ignore_label=3)


def test_a_killed_pack_is_finished_by_running_the_same_command_again(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "big.npz", train_images=rng.integers(0, 255, (600, 16, 16, 3), dtype=np.uint8),
             train_labels=rng.integers(0, 4, 600))  # fmt: skip
    source, out = f"npz:{tmp_path / 'big.npz'}", tmp_path / "out"
    args = [sys.executable, "-m", "keras_skipae.cli", "data", "pack", source, str(out), "--shard-size", "15"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.done.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the pack finished before it could be killed; give it more shards"
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("train-*.tfrecord") if (out / f".{p.name}.done.json").exists()}
    assert kept, "at least one shard was finished before the kill"
    assert len(list(out.glob("train-*.tfrecord"))) < 40
    with pytest.raises(DataError, match="unfinished pack"):
        data.load(f"packed:{out}", "train")
    # the same command again, in this process (a second TensorFlow start-up would only cost time)
    finished = CliRunner().invoke(main, args[3:])
    assert finished.exit_code == 0, finished.output
    assert "train: 600 examples in 40 shard(s)" in finished.output
    # the shards finished before the kill were kept, not rewritten; the result equals an uninterrupted pack
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert not list(out.glob(".*partial")) and not list(out.glob(".*.done.json"))
    fresh = data.pack(source, tmp_path / "fresh", shard_size=15)
    resumed = json.loads((out / "metadata.json").read_text())["splits"]["train"]
    for key, value in fresh["splits"]["train"].items():
        assert resumed[key] == value, key


def test_the_command_packs_and_describes(tmp_path):
    source = _folder(tmp_path / "src")
    result = CliRunner().invoke(main, ["data", "pack", source, str(tmp_path / "out"), "--shard-size", "10"])
    assert result.exit_code == 0, result.output
    assert "train: 21 examples in 3 shard(s)" in result.output
    described = CliRunner().invoke(main, ["data", f"packed:{tmp_path / 'out'}"])
    assert described.exit_code == 0 and "examples: 21" in described.output


def test_fewer_shards_than_workers_is_refused_by_name(tmp_path):
    from keras_skipae.data.packed import check_shards_for_workers

    data.pack(_folder(tmp_path / "src"), tmp_path / "out", shard_size=16)
    ds = data.load(f"packed:{tmp_path / 'out'}", "train")
    check_shards_for_workers(ds, 2)
    with pytest.raises(DataError, match="reads 2 shard\\(s\\) for 4 workers.*--shard-size"):
        check_shards_for_workers(data.split(ds, val_fraction=0.2).labelled, 4)
    nested = data.sample(data.split(ds, val_fraction=0.2).labelled, 3, seed=0)  # a subset of a subset
    with pytest.raises(DataError, match="for 4 workers"):
        check_shards_for_workers(nested, 4)
    data.pack(_folder(tmp_path / "src3"), tmp_path / "out3", shard_size=8)  # 21 examples: 3 shards
    with pytest.warns(UserWarning, match="reads 3 shards for 2 workers: some workers read one more shard"):
        check_shards_for_workers(data.load(f"packed:{tmp_path / 'out3'}", "train"), 2)


WORKER = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from keras_skipae import data
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    ds = data.load(sys.argv[1], "train").batch(6)
    seen = []
    for x, y in strategy.experimental_distribute_dataset(ds):
        for part in strategy.experimental_local_results(x):
            seen += [int(v[0, 0, 0]) * 256 + int(v[0, 0, 1]) for v in part.numpy()]
    with open(sys.argv[2], "w") as f:
        json.dump(seen, f)
""")


@pytest.mark.timeout(300)
def test_two_workers_read_disjoint_shards_whose_union_is_the_dataset(tmp_path):
    from test_cli import _free_ports

    source = _folder(tmp_path / "src", per_class=8)
    data.pack(source, tmp_path / "out", shard_size=4)  # 24 examples, 6 shards: 3 per worker
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, f"packed:{tmp_path / 'out'}",
                                       str(tmp_path / f"seen{index}.json")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    for proc in procs:
        output = proc.communicate(timeout=240)[0]
        assert proc.returncode == 0, output
    seen = [json.loads((tmp_path / f"seen{i}.json").read_text()) for i in range(2)]
    assert len(seen[0]) == len(set(seen[0])) == 12 and len(seen[1]) == len(set(seen[1])) == 12
    assert not set(seen[0]) & set(seen[1]), "the workers read the same examples"
    assert set(seen[0]) | set(seen[1]) == set(range(24))


def test_a_recipe_trains_on_packed_data_with_its_recorded_statistics(tmp_path):
    import yaml
    from test_recipes import tiny_recipe, write_tiny_data

    import keras_skipae as ks
    from keras_skipae import recipes

    meta = data.pack(f"npz:{write_tiny_data(tmp_path)}", tmp_path / "packed", splits=("train", "test"), shard_size=32)
    raw = tiny_recipe(tmp_path / "unused.npz", pretrain_epochs=1, finetune_epochs=1)
    raw["data"].update(source=f"packed:{tmp_path / 'packed'}", normalise="dataset")
    del raw["stages"]["scratch"]
    raw["summary"] = ["finetune"]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    metrics = recipes.run(tmp_path / "tiny.yaml", run_dir=tmp_path / "run", echo=lambda line: None)
    assert set(metrics["stages"]) == {"pretrain", "finetune"}
    arch = ks.load(tmp_path / "run" / "finetune" / "model.keras").arch
    assert arch.mean == pytest.approx(meta["splits"]["train"]["mean"])
    assert arch.std == pytest.approx(meta["splits"]["train"]["std"])


def test_packed_data_is_shuffled_through_a_cache_sized_buffer_with_the_usual_floor(tmp_path):
    """Packed data (mixed when packed) gets a 16 MiB buffer of decoded images, never under 1,024 of them; data
    that is not packed keeps its 512 MiB buffer; a small set is shuffled whole."""
    from keras_skipae.data import pipeline

    data.pack(_folder(tmp_path / "src"), tmp_path / "out", shard_size=8)
    packed = data.load(f"packed:{tmp_path / 'out'}", "train").info
    plain = data.load(_folder(tmp_path / "src2"), "train").info
    assert pipeline._buffer(None, packed) == 21  # all 21 examples
    big = 10**7

    def buffer(info, shape):
        return pipeline._buffer(None, info.replace(num_examples=big, image_shape=shape))

    assert buffer(packed, (28, 28, 1)) == 16 * 1024**2 // 784
    assert buffer(packed, (96, 96, 3)) == buffer(packed, (224, 224, 3)) == 1024  # the floor
    assert buffer(plain, (28, 28, 1)) == 512 * 1024**2 // 784
    assert buffer(plain, (96, 96, 3)) == 512 * 1024**2 // (96 * 96 * 3)


def test_training_shuffles_the_packed_records_before_decoding_and_no_decoded_buffer_follows(tmp_path, monkeypatch):
    """In training (not cached), packed records are shuffled still encoded, through a buffer sized in bytes (at the
    shards' mean record size, never under RECORD_SHUFFLE_MIN, never over the examples); each pass holds every
    example once, in an order its seed repeats; no shuffle buffer of decoded images follows."""
    from keras_skipae.data import packed as P
    from keras_skipae.data import pipeline
    from keras_skipae.models import resolve_arch

    data.pack(_folder(tmp_path / "src"), tmp_path / "out", shard_size=8)
    ds = data.load(f"packed:{tmp_path / 'out'}", "train")
    table = ds.info.table
    assert table.record_buffer(21) == 21  # a small set: all of it
    mean = sum(s["bytes"] for s in table.shards) / 21
    monkeypatch.setattr(P, "RECORD_SHUFFLE_MIN", 3)
    monkeypatch.setattr(P, "RECORD_SHUFFLE_BYTES", int(5.5 * mean))
    assert table.record_buffer(21) == 5
    monkeypatch.setattr(P, "RECORD_SHUFFLE_BYTES", 1)
    assert table.record_buffer(21) == 3  # the floor
    monkeypatch.undo()

    def numbers(dataset):
        return [int(x[0, 0, 0]) * 256 + int(x[0, 0, 1]) for x, _ in dataset.as_numpy_iterator()]

    shuffled = table.dataset(shuffle_seed=5)  # a buffer of all 21 records
    first, second = numbers(shuffled), numbers(shuffled)
    assert sorted(first) == sorted(second) == list(range(21))
    assert first != second  # reshuffled at each pass
    assert numbers(table.dataset(shuffle_seed=5)) == first  # the seed repeats the order
    assert numbers(table.dataset(shuffle_seed=6)) != first
    # the same seed (so the same order of shards) with a buffer of one record: the records' shuffle is what differs
    monkeypatch.setattr(P, "RECORD_SHUFFLE_MIN", 1)
    monkeypatch.setattr(P, "RECORD_SHUFFLE_BYTES", 1)
    assert numbers(table.dataset(shuffle_seed=5)) != first
    monkeypatch.undo()
    # a subset sizes its buffer by its own examples and shards
    asked = []
    real = P.PackedTable.record_buffer
    monkeypatch.setattr(P.PackedTable, "record_buffer", lambda self, n, shards=None: asked.append((n, len(shards)))
                        or real(self, n, shards))  # fmt: skip
    idx = np.array([0, 1, 2])
    assert sorted(numbers(table.dataset(idx, shuffle_seed=5))) == [0, 1, 2]  # example i holds number i
    assert asked == [(3, len(set(table.shard_of[idx].tolist())))]

    built = []
    monkeypatch.setattr(pipeline, "_buffer", lambda *a: built.append(a) or 4)
    arch = resolve_arch("tiny", input_shape=(12, 10, 3))
    batches = list(pipeline.pretrain_pipeline(ds, arch, 3, training=True, seed=0, cache=False))
    assert len(batches) == 7 and not built  # every example once; no buffer of decoded images
    list(pipeline.pretrain_pipeline(ds, arch, 3, training=True, seed=0, cache=True))
    assert built  # cached (decoded once), the decoded images are what gets shuffled


def test_a_segmentation_folder_decoded_at_load_is_packed_with_its_image_files(tmp_path):
    """A segfolder small enough to be decoded at load keeps its image files in the pack (masks as 16-bit PNG), and
    reads back exactly."""
    from keras_skipae.data.testing import write_segfolder

    path = write_segfolder(str(tmp_path / "cam"), 6, ignore_label=11)
    meta = data.pack(f"segfolder:{path}", tmp_path / "out", shard_size=4, ignore_label=11)
    assert meta["splits"]["train"]["from_file"] == meta["splits"]["train"]["num_examples"] > 0
    original = list(data.load(f"segfolder:{path}", "train", ignore_label=11).as_numpy_iterator())
    packed = list(data.load(f"packed:{tmp_path / 'out'}", "train").as_numpy_iterator())
    assert len(packed) == len(original)
    key = {x.tobytes(): m for x, m in original}
    for x, m in packed:
        np.testing.assert_array_equal(key[x.tobytes()], m)
