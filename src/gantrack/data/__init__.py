"""Datasets as uint8 image arrays: readers of the standard formats, the named datasets, and the
splits the pipeline's stages exchange (.npz files with images uint8 (N, H, W, C) and labels)."""

from gantrack.data.datasets import DATASETS, load_dataset
from gantrack.data.splits import Split, digest, load_split, save_split, subsample

__all__ = ["DATASETS", "Split", "digest", "load_dataset", "load_split", "save_split", "subsample"]
