"""Image classification datasets: a Hub name, an image folder, or two that work offline (Fashion-MNIST from the
Debian package ``dataset-fashion-mnist`` and scikit-learn's 8x8 digits). Every loader gives ``image``/``label``."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Image, load_dataset

from ..data.labels import class_names  # noqa: F401  (the one label encoder, importable from here too)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
BUILTIN_DATASETS = ("fashion_mnist", "sklearn_digits")


def _read_idx(path: Path) -> np.ndarray:
    """An array from an IDX file (the MNIST format: zero bytes, type code 8 = uint8, ndim, big-endian sizes)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 8:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _grey_split(images: np.ndarray, labels: np.ndarray, names: list[str]) -> Dataset:
    features = Features({"image": Array2D(images.shape[1:], "uint8"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": images, "label": labels.astype(np.int64)}, features=features)


def load_fashion_mnist(directory: str | Path = FASHION_MNIST_DIR) -> DatasetDict:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 train and 10,000 test 28x28 grey images, 10 classes."""
    directory = Path(directory)
    if not (directory / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(
            f"Fashion-MNIST is not in {directory}. Install it with "
            "`apt-get update && apt-get install -y dataset-fashion-mnist`, or pass its folder."
        )
    splits = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        images = _read_idx(directory / f"{stem}-images-idx3-ubyte.gz")
        labels = _read_idx(directory / f"{stem}-labels-idx1-ubyte.gz")
        splits[split] = _grey_split(images, labels, FASHION_MNIST_LABELS)
    return DatasetDict(splits)


def load_sklearn_digits() -> DatasetDict:
    """scikit-learn's 1,797 8x8 grey digits (values 0-16, rescaled to 0-255), one ``train`` split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("The digits dataset comes with scikit-learn: pip install scikit-learn") from error
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return DatasetDict({"train": _grey_split(images, digits.target, [str(i) for i in range(10)])})


def load_image_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_dir: str | None = None,
    validation_dir: str | None = None,
    **load_kwargs: Any,
) -> DatasetDict:
    """``fashion_mnist`` and ``sklearn_digits`` offline; any other name through ``datasets.load_dataset`` (a Hub
    dataset, or ``imagefolder`` with ``data_dir=...``); or ``train_dir``/``validation_dir`` image folders (one
    sub-folder per class), as in transformers' ``run_image_classification.py``."""
    if dataset_name == "fashion_mnist":
        return load_fashion_mnist()
    if dataset_name == "sklearn_digits":
        return load_sklearn_digits()
    if dataset_name is not None:
        return load_dataset(dataset_name, dataset_config_name, **load_kwargs)
    if train_dir is None and validation_dir is None:
        raise ValueError(
            f"Give a dataset: --dataset_name (a Hub name or one of {BUILTIN_DATASETS}) or --train_dir/--validation_dir."
        )
    data_files = {}
    if train_dir is not None:
        data_files["train"] = str(Path(train_dir) / "**")
    if validation_dir is not None:
        data_files["validation"] = str(Path(validation_dir) / "**")
    return load_dataset("imagefolder", data_files=data_files, **load_kwargs)


def check_images(dataset: Dataset, column: str = "image", split: str = "train") -> None:
    """Decode every image of an `Image` column once, and refuse the first unreadable one, naming its file (or row).

    A corrupt or truncated file would otherwise stop training at the batch that first reads it.
    """
    if not isinstance(dataset.features.get(column), Image):
        return
    for row, image in enumerate(dataset.cast_column(column, Image(decode=False))[column]):
        name = image.get("path") or f"row {row} of the {split} split"
        try:
            with PIL.Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as opened:
                opened.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"Image {name} cannot be read ({error}). Remove or replace the file.") from None


def eval_split(dataset: DatasetDict, fraction: float, seed: int) -> DatasetDict:
    """``dataset`` with a ``validation`` split: its own, else ``fraction`` of ``train`` split off (stratified by
    label when it is a `ClassLabel`), as ``run_image_classification.py`` does."""
    if "validation" in dataset:
        return dataset
    if "train" not in dataset:
        raise ValueError(f"The dataset needs a 'train' split; it has {list(dataset)}.")
    if not 0 < fraction < 1:
        raise ValueError(f"train_val_split must be in (0, 1), got {fraction}.")
    label = "label" if isinstance(dataset["train"].features.get("label"), ClassLabel) else None
    parts = dataset["train"].train_test_split(test_size=fraction, seed=seed, stratify_by_column=label)
    return DatasetDict({**dataset, "train": parts["train"], "validation": parts["test"]})
