"""The data engineer's commands: ``skipae data SOURCE`` describes a source, ``skipae data pack`` packs it.

Registered on the ``skipae`` group by :mod:`keras_skipae.cli`; like it, nothing
here imports TensorFlow until a command runs.
"""

from __future__ import annotations

import click


class DataGroup(click.Group):
    """``skipae data SOURCE`` describes a source; ``skipae data pack SOURCE OUT`` packs it."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["describe", *args]
        return super().parse_args(ctx, args)


@click.group("data", cls=DataGroup)
def data_group():
    """Describe a data source (skipae data SOURCE) or pack it into shards (skipae data pack SOURCE OUT)."""


def _label_map(label_map: str | None) -> dict | None:
    try:
        return {int(k): int(v) for k, v in (p.split(":") for p in label_map.split(","))} if label_map else None
    except ValueError:
        raise click.BadParameter(f"{label_map!r}; expected OLD:NEW pairs, e.g. 255:1", param_hint="--label-map") from None


@data_group.command("pack")
@click.argument("source")
@click.argument("out")
@click.option("--split", "splits", multiple=True, default=("train",), show_default=True,
              help="Split to pack; repeat for several (--split train --split test).")
@click.option("--shard-size", type=int, default=2048, show_default=True,
              help="Examples per shard; give a cluster at least one shard per worker.")
@click.option("--data-dir", default=None, help="TFDS data directory.")
@click.option("--ignore-label", type=int, default=None, help="Mask value that scores nothing (CamVid: 11).")
@click.option("--label-map", default=None, help="Value remap, e.g. '255:1' or '11:255,0:1'.")
@click.option("--images", default=None, help="segfolder: image name pattern.")
@click.option("--masks", default=None, help="segfolder: mask name pattern.")
@click.option("--root", default=None, help="seglist: where the list's paths start.")
@click.option("--palette", default=None, help="Colour-coded masks: a palette file.")
@click.option("--num-classes", type=int, default=None, help="Number of classes (default: inferred).")
@click.option("--max-image-pixels", type=int, default=None, help="Refuse larger images (default 64 megapixels).")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True,
              help="Unreadable image files: stop, or leave them out (their names are recorded).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier pack of another request in OUT.")
def data_pack_cmd(source, out, splits, shard_size, data_dir, ignore_label, label_map, images, masks, root, palette,
                  num_classes, max_image_pixels, on_error, overwrite):  # fmt: skip
    """Pack SOURCE into sharded TFRecord files in OUT, read back as packed:OUT.

    Every image is decoded and checked once, here. Rerun the same command after
    an interruption to finish the pack: finished shards are kept.
    """
    from . import data

    meta = data.pack(source, out, splits=splits, shard_size=shard_size, overwrite=overwrite, data_dir=data_dir,
                     ignore_label=ignore_label, label_map=_label_map(label_map), images=images, masks=masks,
                     root=root, palette=palette, num_classes=num_classes, max_image_pixels=max_image_pixels,
                     on_error=on_error)  # fmt: skip
    for split, entry in meta["splits"].items():
        size = sum(s["bytes"] for s in entry["shards"])
        click.echo(f"{split}: {entry['num_examples']} examples in {len(entry['shards'])} shard(s), "
                   f"{size / 1e6:.1f} MB")  # fmt: skip
    skipped = sum(len(entry["skipped_files"]) for entry in meta["splits"].values())
    if skipped:
        click.echo(f"left out {skipped} unreadable file(s), listed in {out}/metadata.json")
    click.echo(f"read it as packed:{out}")


@data_group.command("describe")
@click.argument("source")
@click.option("--split", default="train", show_default=True, help="Split, with TFDS-style slicing (train[:90%]).")
@click.option("--data-dir", default=None, help="TFDS data directory.")
@click.option("--ignore-label", type=int, default=None, help="Mask value that scores nothing (CamVid: 11).")
@click.option("--label-map", default=None, help="Value remap, e.g. '255:1' or '11:255,0:1'.")
@click.option("--num-classes", type=int, default=None, help="Number of classes (default: inferred).")
@click.option("--images", default=None, help="segfolder: image name pattern, e.g. '{split}/images/{stem}_{split}.tif'.")
@click.option("--masks", default=None, help="segfolder: mask name pattern, e.g. '{split}/1st_manual/{stem}_manual1.gif'.")
@click.option("--root", default=None, help="seglist: where the list's paths start (default: the list's folder).")
@click.option("--palette", default=None, help="Colour-coded masks: a palette file (image strip or 'R G B [name]' lines).")
@click.option("--max-image-pixels", type=int, default=None, help="Refuse larger images (default 64 megapixels).")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True,
              help="Unreadable image files: stop, or leave them out and count them.")
@click.option("--stats", is_flag=True, help="Also compute the per-channel mean and std (a full pass).")
def data_cmd(source, split, data_dir, ignore_label, label_map, num_classes, images, masks, root, palette,
             max_image_pixels, on_error, stats):  # fmt: skip
    """Load SOURCE (tfds:NAME, idx:[DIR], folder:PATH, segfolder:PATH, seglist:LIST, npz:PATH) and describe it."""
    from . import data

    mapping = _label_map(label_map)
    ds = data.load(source, split, data_dir=data_dir, ignore_label=ignore_label, on_error=on_error,
                   label_map=mapping, num_classes=num_classes, images=images, masks=masks, root=root,
                   palette=palette, max_image_pixels=max_image_pixels)  # fmt: skip
    click.echo(data.describe(ds, stats=stats))
