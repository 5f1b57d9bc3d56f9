"""`data.dataset: tfds:NAME`: an image dataset of TensorFlow Datasets by name (the optional
extra `tfds`: pip install 'gantrack[tfds]'), squared and resized like a folder of images."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image, ImageOps

from gantrack.data.splits import Split, hold_out
from gantrack.runtime.errors import UserError, one_line

logger = logging.getLogger(__name__)

PREFIX = "tfds:"


def read_tfds(name: str, data_dir: str | None, size: int, channels: int | None, *,
              test_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:  # fmt: skip
    """(train, test) of a TensorFlow Datasets image dataset: downloaded and prepared by tfds
    (into data_dir, default ~/tensorflow_datasets) on first use; its `test` split, else a
    seeded test_fraction of `train`. Labels from its ClassLabel feature, else all 0."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(f"data.dataset: {PREFIX}{name} needs tensorflow-datasets; "
                        "pip install 'gantrack[tfds]'") from None  # fmt: skip
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # DatasetNotFoundError and malformed names
        raise UserError(
            f"data.dataset: {PREFIX}{name}: {one_line(exc)} (names: tfds.list_builders())"
        ) from None
    image_key, label_key = _features(builder.info.features)
    if image_key is None:
        raise UserError(f"data.dataset: {PREFIX}{name} has no image feature")
    try:
        builder.download_and_prepare()
    except Exception as exc:  # offline, a moved URL, a full disk: tfds raises many kinds
        raise UserError(
            f"data.dataset: {PREFIX}{name} needs a download, which failed ({one_line(exc)}); "
            "run `gantrack prepare` where the internet is reachable, or copy the prepared "
            "dataset into data.source_dir (tfds' data_dir)"
        ) from None
    feature_channels = builder.info.features[image_key].shape[-1]
    mode = "L" if (channels or (1 if feature_channels == 1 else 3)) == 1 else "RGB"
    names = tuple(builder.info.features[label_key].names) if label_key else ()
    train = _read(builder, "train", image_key, label_key, size, mode, names)
    try:
        test = _read(builder, "test", image_key, label_key, size, mode, names)
    except (ValueError, KeyError):  # no test split
        logger.info("%s%s has no test split: holding out %.0f%% of train", PREFIX, name,
                    100 * test_fraction)  # fmt: skip
        return hold_out(train.images, train.labels, test_fraction, seed, label_key is not None,
                        names)  # fmt: skip
    return train, test


def _features(features) -> tuple[str | None, str | None]:
    """The names of the first image feature and of the class label (`label` first)."""
    import tensorflow_datasets as tfds

    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    labels.sort(key=lambda k: k != "label")
    return (images[0] if images else None), (labels[0] if labels else None)


def _read(builder, split: str, image_key: str, label_key: str | None, size: int,
          mode: str, names: tuple[str, ...]) -> Split:  # fmt: skip
    """One split as uint8 (N, size, size, C): center-cropped to a square, resized (Lanczos)."""
    import tensorflow_datasets as tfds

    images, labels = [], []
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
        array = example[image_key]
        picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array[..., :3])
        if picture.size != (size, size) or picture.mode != mode:
            picture = ImageOps.fit(picture.convert(mode), (size, size), Image.Resampling.LANCZOS)
        images.append(np.asarray(picture, np.uint8))
        labels.append(int(example[label_key]) if label_key else 0)
    stacked = np.stack(images)
    if mode == "L":
        stacked = stacked[..., np.newaxis]
    return Split(stacked, np.asarray(labels, np.int64), names)
