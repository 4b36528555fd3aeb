"""Argument dataclass and data preparation shared by the image recipes (teacher training and distillation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from ..data.unlabeled import combine_labeled_and_unlabeled, log_label_counts
from .augment import RandomResizedCropFlip, to_pil
from .datasets import BUILTIN_DATASETS, check_images, class_names, eval_split, load_image_dataset

# Built-in offline copies of Hub datasets (sklearn_digits has none).
BUILTIN_HUB_IDS = {"fashion_mnist": "zalando-datasets/fashion_mnist"}


@dataclass
class ImageDataArguments:
    """What data to train and evaluate on, and how to augment it (as in ``run_image_classification.py``)."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": f"A Hub dataset, 'imagefolder' (with --data_dir), or offline: {', '.join(BUILTIN_DATASETS)}."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    data_dir: str | None = field(default=None, metadata={"help": "data_dir passed to datasets.load_dataset."})
    train_dir: str | None = field(default=None, metadata={"help": "A folder of training images, one folder a class."})
    unlabeled_dir: str | None = field(
        default=None,
        metadata={
            "help": "A folder of unlabelled images (no class folders) that join the training set: the teacher labels "
            "them (in the loop, or K views each with --teacher_views)."
        },
    )
    unlabeled_split: str | None = field(
        default=None,
        metadata={
            "help": "A split of --dataset_name used as unlabelled images (labels dropped); 'unlabeled' for the "
            "built-in data is the training images beyond --max_train_samples."
        },
    )
    max_unlabeled_samples: int | None = field(default=None, metadata={"help": "Use a random subset this large."})
    validation_dir: str | None = field(default=None, metadata={"help": "A folder of validation images."})
    image_column_name: str = field(default="image", metadata={"help": "The column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "The column holding the class labels."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Share of train split off for validation when there is no validation split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on a random subset this large."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on random subsets of validation and test this large."}
    )
    split_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the train/validation split and of the max_*_samples subsets (default: --seed). Fix it "
            "(to the teacher's --seed) to compare seeds on the same data and to keep a teacher's training images out "
            "of the student's validation split."
        },
    )
    augment: bool = field(
        default=True,
        metadata={
            "help": "Random resized crop and horizontal flip on train images (off for digits and text-like images)."
        },
    )
    min_crop_scale: float = field(
        default=0.08,
        metadata={"help": "Smallest crop area, as a share of the image (ImageNet's 0.08; 0.5+ for small images)."},
    )
    flip_prob: float = field(
        default=0.5,
        metadata={"help": "Probability of a horizontal flip (0 when mirroring changes the class, e.g. digits)."},
    )

    def card_kwargs(self) -> dict[str, str]:
        """The dataset as `create_model_card` names it: by its Hub id when it has one (built-in copies included)."""
        if not self.dataset_name:
            return {}
        hub_id = BUILTIN_HUB_IDS.get(
            self.dataset_name, None if self.dataset_name in BUILTIN_DATASETS else self.dataset_name
        )
        kwargs = {"dataset": self.dataset_name, **({"dataset_tags": hub_id} if hub_id else {})}
        if hub_id and self.dataset_config_name:
            kwargs["dataset_args"] = self.dataset_config_name
        return kwargs

    def augmentation_settings(self) -> dict[str, float | bool]:
        """The training augmentation, for the model card."""
        return {"augment": self.augment, "min_crop_scale": self.min_crop_scale, "flip_prob": self.flip_prob}

    def augmentation(self) -> RandomResizedCropFlip | None:
        return (
            RandomResizedCropFlip(scale=(self.min_crop_scale, 1.0), flip_prob=self.flip_prob) if self.augment else None
        )


def prepare_image_splits(args: ImageDataArguments, seed: int) -> tuple[DatasetDict, list[str]]:
    """``train``, ``validation`` (and ``test`` when the dataset has one) with ``image``/``label`` columns, subsampled
    as asked, and the class names; the split and the subsets are drawn with ``args.split_seed``, else ``seed``."""
    seed = seed if args.split_seed is None else args.split_seed
    load_kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
    dataset = load_image_dataset(
        args.dataset_name, args.dataset_config_name, args.train_dir, args.validation_dir, **load_kwargs
    )
    renames = {args.image_column_name: "image", args.label_column_name: "label"}
    for split in dataset.values():
        for old in renames:
            if old not in split.column_names:
                raise ValueError(
                    f"Column {old!r} is not in the dataset (columns: {split.column_names}). "
                    "Pass --image_column_name / --label_column_name."
                )
    dataset = dataset.rename_columns({old: new for old, new in renames.items() if old != new})
    dataset = eval_split(dataset, args.train_val_split, seed)
    limits = {"train": args.max_train_samples, "validation": args.max_eval_samples, "test": args.max_eval_samples}
    for split, limit in limits.items():
        if split in dataset and limit is not None and limit < len(dataset[split]):
            shuffled = dataset[split].shuffle(seed=seed)
            dataset[split] = shuffled.select(range(limit))
            if split == "train" and "unlabeled" not in dataset:  # the rest: an unlabelled pool on request
                dataset["unlabeled"] = shuffled.select(range(limit, len(shuffled)))
    keep = [split for split in ("train", "validation", "test") if split in dataset]
    for split in keep:
        check_images(dataset[split], split=split)
    names = class_names(dataset[keep[0]])
    unlabeled = _unlabeled_images(args, dataset, seed)
    if unlabeled is not None and "train" in dataset:
        dataset["train"] = combine_labeled_and_unlabeled(dataset["train"], unlabeled, "label")
        log_label_counts(dataset["train"])
    return DatasetDict({split: dataset[split] for split in keep}), names


def _unlabeled_images(args: ImageDataArguments, dataset: DatasetDict, seed: int) -> Dataset | None:
    """The unlabelled pool: ``--unlabeled_dir`` or ``--unlabeled_split`` (labels dropped), subsampled as asked."""
    if args.unlabeled_dir and args.unlabeled_split:
        raise ValueError("Give --unlabeled_dir or --unlabeled_split, not both.")
    if args.unlabeled_dir:
        if not Path(args.unlabeled_dir).is_dir():
            raise FileNotFoundError(f"--unlabeled_dir {args.unlabeled_dir} is not a folder.")
        unlabeled = load_dataset("imagefolder", data_files={"train": str(Path(args.unlabeled_dir) / "**")})["train"]
        unlabeled = unlabeled.remove_columns([c for c in ("label",) if c in unlabeled.column_names])
    elif args.unlabeled_split:
        if args.unlabeled_split not in dataset:
            raise ValueError(
                f"The dataset has no split {args.unlabeled_split!r} (it has {list(dataset)}); the built-in "
                "'unlabeled' split holds the training images beyond --max_train_samples: set it."
            )
        unlabeled = dataset[args.unlabeled_split]
        unlabeled = unlabeled.remove_columns([c for c in ("label",) if c in unlabeled.column_names])
    else:
        return None
    limit = args.max_unlabeled_samples
    if limit is not None and limit < len(unlabeled):
        unlabeled = unlabeled.shuffle(seed=seed).select(range(limit))
    check_images(unlabeled, split="unlabeled")
    return unlabeled


def image_shape(dataset: Dataset | DatasetDict) -> tuple[int, int]:
    """``(height, width)`` of the first image (of ``train`` in a `DatasetDict`): models from a config are sized for
    it (and take RGB, grey images being converted on the way in)."""
    split = dataset["train"] if isinstance(dataset, DatasetDict) else dataset
    image = to_pil(split[0]["image"])
    return image.height, image.width
