"""Image distillation on tiny models and tiny in-memory image sets."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Array2D, ClassLabel, Dataset, Features
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ResNetForImageClassification,
    TrainerCallback,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessorPil,
)

from hf_distill import DataCollatorForDistillation, DistillationTrainer, distillation_loss
from hf_distill.vision import (
    DeiTDistillationTrainer,
    DistillationImageTransform,
    PixelFormat,
    RandomResizedCropFlip,
    crop_view,
    default_image_processor,
    deit_distillation_loss,
    identity_view,
    image_model_from_config,
    precompute_teacher_views,
    to_pil,
)
from tests.conftest import (
    CLASSES,
    check_image_pipeline,
    image_flags,
    load_recipe,
    make_args,
    tiny_deit,
    tiny_resnet,
    tiny_vit,
    write_image_folders,
)

SIDE = 12
IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
STUDENT = PixelFormat(default_image_processor((8, 8)))
TEACHER = PixelFormat(ViTImageProcessorPil(size={"height": 8, "width": 8}, do_convert_rgb=True, **IMAGENET))
AUGMENT = RandomResizedCropFlip(scale=(0.3, 1.0))


def smooth_images(n: int, seed: int = 0, side: int = SIDE) -> np.ndarray:
    """Low-frequency grey images: resampling them at two resolutions gives nearly the same picture."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, generator=g)
    fine = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=True).clamp(0, 1)
    return (fine[:, 0] * 255).round().to(torch.uint8).numpy()


def image_dataset(n: int = 10, seed: int = 0) -> Dataset:
    features = Features({"image": Array2D((SIDE, SIDE), "uint8"), "label": ClassLabel(names=CLASSES)})
    labels = np.arange(n) % len(CLASSES)
    return Dataset.from_dict({"image": smooth_images(n, seed), "label": labels}, features=features)


def unnormalise(pixels: torch.Tensor, pixel_format: PixelFormat) -> torch.Tensor:
    std, mean = pixel_format.processor.image_std, pixel_format.processor.image_mean
    return pixels * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]


# ---- views ----


def test_views_are_seeded_and_fit_the_image():
    draw = [AUGMENT.sample(SIDE, 20, torch.Generator().manual_seed(s)) for s in range(50)]
    assert draw == [AUGMENT.sample(SIDE, 20, torch.Generator().manual_seed(s)) for s in range(50)]
    for top, left, height, width, flip in draw:
        assert 0 <= top and top + height <= SIDE and 0 <= left and left + width <= 20 and flip in (0, 1)
        assert 0.3 * SIDE * 20 * 0.5 <= height * width <= SIDE * 20  # rounding can shave a little off the area
    assert len({tuple(v) for v in draw}) > 40 and {v[4] for v in draw} == {0, 1}


def test_views_are_cropped_flipped_and_prepared_by_the_image_processor():
    image = smooth_images(1)[0]
    whole = PixelFormat(default_image_processor((SIDE, SIDE))).render(image, identity_view(SIDE, SIDE))
    expected = torch.from_numpy(image).float().div(255).mul(2).sub(1).expand(3, -1, -1)  # grey made RGB
    torch.testing.assert_close(whole, expected)
    plain = dict(size={"height": 8, "width": 8}, image_mean=[0.0] * 3, image_std=[1.0] * 3, do_convert_rgb=True)
    view = [2, 3, 8, 8, 1]
    crop = PixelFormat(ViTImageProcessorPil(**plain)).render(image, view)
    torch.testing.assert_close(crop, (torch.from_numpy(image[2:10, 3:11]).float() / 255).flip(-1).expand(3, -1, -1))
    rgb = np.stack([image, image // 2, image // 3], axis=-1)
    grey_model = PixelFormat(
        ViTImageProcessorPil(size={"height": 8, "width": 8}, image_mean=[0.0], image_std=[1.0]), 1
    )
    grey = grey_model.render(rgb, view)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[2:10, 3:11]
    assert grey.shape == (1, 8, 8)
    torch.testing.assert_close(grey[0], torch.from_numpy(luma / 255).float().flip(-1), rtol=0, atol=1.5 / 255)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: RandomResizedCropFlip(scale=(0.5, 1.5)), ValueError, "scale must satisfy"),
        (lambda: PixelFormat(default_image_processor((8, 8)), num_channels=2), ValueError, "must be 1 or 3"),
        (lambda: PixelFormat(default_image_processor((8, 8)), num_channels=1), ValueError, "normalises 3 channel"),
        (lambda: to_pil(np.zeros((4, 4), np.float32)), TypeError, "values in 0-255"),
        (lambda: crop_view(to_pil(np.zeros((4, 4), np.uint8)), [2, 2, 3, 3, 0]), ValueError, "does not fit"),
    ],
)
def test_bad_views_and_formats_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_teacher_and_student_inputs_show_the_same_view_at_their_own_resolution():
    """The teacher gets each random view at 16x16, the student at 8x8 (both RGB): they agree once pooled."""
    teacher_format = PixelFormat(
        ViTImageProcessorPil(size={"height": 16, "width": 16}, do_convert_rgb=True, **IMAGENET)
    )
    transform = DistillationImageTransform(student=STUDENT, teacher=teacher_format, augment=AUGMENT, seed=3)
    out = transform({"image": list(image_dataset(32)["image"]), "label": [0] * 32})
    student = torch.stack([unnormalise(x, STUDENT)[0] for x in out["pixel_values"]])
    teacher = torch.stack([unnormalise(x, teacher_format) for x in out["teacher_pixel_values"]])
    assert torch.allclose(teacher[:, 0], teacher[:, 2], atol=1e-5)  # grey made RGB
    pooled = F.avg_pool2d(teacher[:, :1], 2)[:, 0]
    same = (pooled - student).abs().mean((1, 2))
    shifted = (pooled - student.roll(1, 0)).abs().mean((1, 2))
    assert same.max() < 0.03 < shifted.mean()
    assert out["labels"] == [0] * 32


def test_eval_transform_renders_the_whole_image_and_refuses_clean_logits_under_augmentation():
    images = list(image_dataset(4)["image"])
    out = DistillationImageTransform(student=STUDENT)({"image": images})
    for image, pixels in zip(images, out["pixel_values"], strict=True):
        torch.testing.assert_close(pixels, STUDENT.render(image, identity_view(SIDE, SIDE)))
    with pytest.raises(ValueError, match="do not match randomly augmented views"):
        DistillationImageTransform(student=STUDENT, augment=AUGMENT)({"image": images, "teacher_logits": [[0.0] * 3]})


def test_in_batch_teacher_receives_the_view_the_student_sees(tmp_path):
    """Through the trainer: under random augmentation every step's teacher input is the student's view."""
    student, teacher = tiny_vit(), tiny_resnet()
    seen = {"student": [], "teacher": []}
    student.register_forward_pre_hook(lambda m, a, kw: seen["student"].append(kw["pixel_values"]), with_kwargs=True)
    teacher.register_forward_pre_hook(lambda m, a, kw: seen["teacher"].append(kw["pixel_values"]), with_kwargs=True)
    data = image_dataset(16)
    data.set_transform(DistillationImageTransform(student=STUDENT, teacher=TEACHER, augment=AUGMENT, seed=0))
    trainer = DistillationTrainer(
        model=student,
        args=make_args(tmp_path, max_steps=4, remove_unused_columns=False),
        teacher_model=teacher,
        train_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )
    trainer.train()
    assert len(seen["student"]) == len(seen["teacher"]) == 4
    for student_in, teacher_in in zip(seen["student"], seen["teacher"], strict=True):
        assert student_in.shape == teacher_in.shape == (8, 3, 8, 8)
        torch.testing.assert_close(
            unnormalise(teacher_in, TEACHER), unnormalise(student_in, STUDENT), rtol=0, atol=1e-5
        )
    clean = torch.stack(DistillationImageTransform(student=STUDENT)(data.with_format(None)[:8])["pixel_values"])
    assert not torch.allclose(seen["student"][0], clean)  # the views really were augmented


# ---- K-view cache ----


def teacher_logits_of(teacher, image, view, pixel_format=TEACHER):
    with torch.no_grad():
        return teacher(pixel_values=pixel_format.render(image, view)[None]).logits[0]


def test_k_view_cache_reproduces_its_views():
    teacher, data = tiny_resnet(), image_dataset(6)
    cached = precompute_teacher_views(
        teacher, data, teacher_format=TEACHER, augment=AUGMENT, num_views=3, batch_size=4
    )
    assert cached.column_names == ["image", "label", "teacher_views", "teacher_logits"]
    views, logits = np.asarray(cached["teacher_views"]), np.asarray(cached["teacher_logits"], dtype=np.float32)
    assert views.shape == (6, 3, 5) and logits.shape == (6, 3, 3)
    assert len({tuple(v) for v in views.reshape(-1, 5)}) == 18
    for i, image in enumerate(data["image"]):
        for j in range(3):
            expected = teacher_logits_of(teacher, image, views[i, j])
            torch.testing.assert_close(torch.from_numpy(logits[i, j]), expected, rtol=1e-4, atol=1e-5)
    # The views depend on the seed and the row only, not on the batch size.
    again = precompute_teacher_views(teacher, data, teacher_format=TEACHER, augment=AUGMENT, num_views=3, batch_size=5)
    assert np.array_equal(np.asarray(again["teacher_views"]), views)
    np.testing.assert_allclose(np.asarray(again["teacher_logits"]), logits, rtol=1e-5, atol=1e-6)
    other = precompute_teacher_views(teacher, data, teacher_format=TEACHER, augment=AUGMENT, num_views=3, seed=1)
    assert not np.array_equal(np.asarray(other["teacher_views"]), views)


def test_each_read_draws_a_stored_view_and_passes_on_its_logits():
    teacher, data = tiny_resnet(), image_dataset(4)
    cached = precompute_teacher_views(teacher, data, teacher_format=TEACHER, augment=AUGMENT, num_views=3)
    views, logits = np.asarray(cached["teacher_views"]), np.asarray(cached["teacher_logits"], dtype=np.float32)
    cached.set_transform(DistillationImageTransform(student=STUDENT, augment=AUGMENT, seed=0))
    drawn = set()
    for _epoch in range(30):
        batch = cached[:4]
        for i in range(4):
            image = data[i]["image"]
            matches = [
                j for j in range(3) if torch.equal(batch["pixel_values"][i], STUDENT.render(image, views[i, j]))
            ]
            assert len(matches) == 1
            torch.testing.assert_close(batch["teacher_logits"][i], torch.from_numpy(logits[i, matches[0]]))
            drawn.add((i, matches[0]))
    assert len(drawn) == 12  # every stored view of every image was drawn at some epoch


def test_k_view_cache_trains_without_a_teacher_and_is_checked_against_the_student(tmp_path):
    data = image_dataset(16)
    train = precompute_teacher_views(tiny_resnet(), data, teacher_format=TEACHER, augment=AUGMENT, num_views=2)
    evaluation = precompute_teacher_views(tiny_resnet(), data, teacher_format=TEACHER, augment=None)
    train.set_transform(DistillationImageTransform(student=STUDENT, augment=AUGMENT))
    evaluation.set_transform(DistillationImageTransform(student=STUDENT))
    trainer = DistillationTrainer(
        model=tiny_vit(),
        args=make_args(tmp_path, max_steps=2, remove_unused_columns=False),
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=DataCollatorForDistillation(),
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert np.isfinite(trainer.state.log_history[0]["loss_kd"]) and 0 <= metrics["eval_agreement"] <= 1
    four_classes = ViTForImageClassification(ViTConfig(**{**tiny_vit().config.to_dict(), "num_labels": 4}))
    with pytest.raises(ValueError, match="holds 3 logits per example but the student has 4 classes"):
        DistillationTrainer(model=four_classes, args=make_args(tmp_path), train_dataset=train)


def test_k_view_options_are_checked():
    with pytest.raises(ValueError, match="use num_views=1"):
        precompute_teacher_views(tiny_resnet(), image_dataset(2), teacher_format=TEACHER, augment=None, num_views=2)
    with pytest.raises(ValueError, match="no image column 'img'"):
        precompute_teacher_views(
            tiny_resnet(), image_dataset(2), teacher_format=TEACHER, augment=None, image_column="img"
        )


# ---- DeiT ----


def test_deit_loss_matches_a_float64_reference():
    g = torch.Generator().manual_seed(0)
    cls, dist, teacher = (torch.randn(5, 3, generator=g) for _ in range(3))
    labels = torch.tensor([0, 1, 2, 1, 0])
    soft = deit_distillation_loss(cls, dist, teacher, labels, alpha=0.3, temperature=2.0)
    ce = F.cross_entropy(cls.double(), labels)
    p_t = F.softmax(teacher.double() / 2, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(dist.double() / 2, -1))).sum(-1).mean() * 4
    torch.testing.assert_close(soft.loss.double(), 0.3 * ce + 0.7 * kl)
    hard = deit_distillation_loss(cls, dist, teacher, labels, alpha=0.5, temperature=2.0, loss="hard")
    expected = 0.5 * ce + 0.5 * F.cross_entropy(dist.double(), teacher.argmax(-1))
    torch.testing.assert_close(hard.loss.double(), expected)


def test_hard_distillation_is_cross_entropy_to_the_teacher_top_class_for_any_student():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, -100, 1])
    parts = distillation_loss(student, teacher, labels, alpha=0.2, temperature=3.0, loss="hard")
    ce = F.cross_entropy(student.double(), labels, ignore_index=-100)
    expected = 0.2 * ce + 0.8 * F.cross_entropy(student.double(), teacher.argmax(-1))
    torch.testing.assert_close(parts.loss.double(), expected)


@pytest.mark.parametrize("teacher_views", [0, 2])
def test_deit_training_runs_and_the_saved_student_loads(tmp_path, teacher_views):
    data = image_dataset(16)
    teacher = tiny_resnet()
    if teacher_views:
        data = precompute_teacher_views(teacher, data, teacher_format=TEACHER, augment=AUGMENT, num_views=2)
    data.set_transform(
        DistillationImageTransform(student=STUDENT, teacher=None if teacher_views else TEACHER, augment=AUGMENT)
    )
    student = tiny_deit()
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    trainer = DeiTDistillationTrainer(
        model=student,
        args=make_args(tmp_path, max_steps=3, remove_unused_columns=False, distillation_loss="hard"),
        teacher_model=None if teacher_views else teacher,
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )
    trainer.train()
    log = trainer.state.log_history[0]
    assert np.isfinite(log["loss"]) and "loss_ce" in log and "loss_kd" in log
    for head in ("cls_classifier.weight", "distillation_classifier.weight"):
        assert not torch.equal(before[head], dict(student.named_parameters())[head])  # both heads learn
    assert "eval_accuracy" not in trainer.evaluate()  # no compute_metrics passed, but labels reach evaluation
    trainer.save_model(str(tmp_path / "deit"))
    loaded = DeiTForImageClassificationWithTeacher.from_pretrained(str(tmp_path / "deit")).eval()
    assert isinstance(AutoModelForImageClassification.from_pretrained(str(tmp_path / "deit")), type(loaded))
    pixels = torch.stack(DistillationImageTransform(student=STUDENT)(image_dataset(4)[:4])["pixel_values"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).logits, student.eval()(pixel_values=pixels).logits)


def test_deit_trainer_refuses_other_students_and_one_sided_alpha(tmp_path):
    with pytest.raises(TypeError, match="DeiTForImageClassificationWithTeacher"):
        DeiTDistillationTrainer(model=tiny_vit(), args=make_args(tmp_path), teacher_model=tiny_resnet())
    with pytest.raises(ValueError, match="leaves one DeiT head untrained"):
        DeiTDistillationTrainer(model=tiny_deit(), args=make_args(tmp_path, alpha=1.0), teacher_model=tiny_resnet())


# ---- ResNet students ----


def test_resnet_student_from_a_preset_trains_in_two_stages_and_runs_in_a_pipeline(tmp_path):
    """The image recipe's ResNet student (preset ``resnet-tiny``, at --student_image_size 16): trains with a first
    head-only stage, saves with its processor, and reloads in ``pipeline("image-classification")``."""
    write_image_folders(tmp_path, CLASSES)
    tiny_resnet().save_pretrained(tmp_path / "teacher")
    out = tmp_path / "student"
    flags = ["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val")]
    flags += ["--student_model_type", "resnet-tiny", "--student_image_size", "16", "--two_stage_steps", "1"]
    metrics = load_recipe("image_classification").main(image_flags(str(tmp_path / "teacher"), out, *flags))
    assert metrics["train_loss"] > 0 and 0 <= metrics["eval_accuracy"] <= 1
    student = AutoModelForImageClassification.from_pretrained(out)
    assert isinstance(student, ResNetForImageClassification)
    assert student.config.hidden_sizes == [16, 32, 64] and student.config.layer_type == "basic"
    assert AutoImageProcessor.from_pretrained(out).size == {"height": 16, "width": 16}
    check_image_pipeline(str(out), CLASSES)


def test_presets_take_overrides_and_unknown_model_types_name_the_presets():
    model = image_model_from_config("resnet-tiny", CLASSES, overrides={"depths": [2, 1, 1]})
    assert model.config.depths == [2, 1, 1] and model.config.hidden_sizes == [16, 32, 64]
    with pytest.raises(ValueError, match="Unknown image model type 'resnet-huge'.*resnet-tiny"):
        image_model_from_config("resnet-huge", CLASSES)


class BackboneStates(TrainerCallback):
    """The student's backbone state (parameters and BatchNorm running statistics) after every optimizer step."""

    def __init__(self, model: ResNetForImageClassification):
        self.model, self.states = model, []

    def on_step_end(self, args, state, control, **kwargs):
        self.states.append({k: v.detach().clone() for k, v in self.model.resnet.state_dict().items()})


def test_two_stage_trains_only_the_resnet_classifier_in_stage_1(tmp_path):
    """Stage 1 (2 steps) trains ResNet's classifier alone: the backbone's weights stay as initialised (its BatchNorm
    running statistics follow the data, as BatchNorm stays in training mode); stage 2 (step 3) trains them."""
    student = tiny_resnet(seed=2)
    initial = {k: v.detach().clone() for k, v in student.resnet.state_dict().items()}
    weights = {name for name, _ in student.resnet.named_parameters()}
    head = student.classifier[1].weight.detach().clone()
    data = image_dataset(16)
    data.set_transform(DistillationImageTransform(student=STUDENT, teacher=TEACHER, augment=AUGMENT))
    states = BackboneStates(student)
    trainer = DistillationTrainer(
        model=student,
        args=make_args(tmp_path, max_steps=3, two_stage_steps=2, learning_rate=1e-2, remove_unused_columns=False),
        teacher_model=tiny_resnet(),
        train_dataset=data,
        data_collator=DataCollatorForDistillation(),
        callbacks=[states],
    )
    trainer.train()
    assert all(p.requires_grad for p in student.parameters())  # unfrozen at the end
    for name in weights:
        torch.testing.assert_close(states.states[1][name], initial[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(student.classifier[1].weight, head)
    statistics = [k for k in initial if k.endswith("running_mean")]
    assert all(not torch.equal(states.states[1][k], initial[k]) for k in statistics)
    changed = {k for k in weights if not torch.equal(states.states[2][k], initial[k])}
    assert "embedder.embedder.convolution.weight" in changed and len(changed) > len(weights) // 2


def test_k_view_transform_with_remove_unused_columns_names_it(tmp_path):
    data = image_dataset(8)
    train = precompute_teacher_views(tiny_resnet(), data, teacher_format=TEACHER, augment=AUGMENT, num_views=2)
    train.set_transform(DistillationImageTransform(student=STUDENT, augment=AUGMENT))
    trainer = DistillationTrainer(
        model=tiny_vit(),
        args=make_args(tmp_path, max_steps=1, remove_unused_columns=True),
        train_dataset=train,
        data_collator=DataCollatorForDistillation(),
    )
    with pytest.raises(ValueError, match=r"no image column 'image'.*remove_unused_columns=False"):
        trainer.train()
    assert trainer.state.global_step == 0
    # control: a misnamed image column is still named
    renamed = train.rename_column("image", "picture")
    with pytest.raises(ValueError, match=r"no image column 'image'.*image_column="):
        renamed[:2]


def test_deit_trainer_refuses_an_alpha_schedule_that_reaches_a_one_sided_alpha(tmp_path):
    args = make_args(tmp_path, alpha=0.5, alpha_schedule="linear", alpha_end=1.0)
    with pytest.raises(ValueError, match="alpha_end=1.0 leaves one DeiT head untrained"):
        DeiTDistillationTrainer(model=tiny_deit(), args=args, teacher_model=tiny_resnet())
    args = make_args(tmp_path, alpha=0.5, alpha_schedule="linear", alpha_end=0.8)  # control: inside (0, 1)
    assert DeiTDistillationTrainer(model=tiny_deit(), args=args, teacher_model=tiny_resnet()).args.alpha_end == 0.8


def test_deit_trainer_adds_the_objectives_extra_terms(tmp_path):
    """A subclass with its own heads computes CE and KD; the trainer adds the objective's terms to every loss."""
    trainer = DeiTDistillationTrainer(
        model=tiny_deit(), args=make_args(tmp_path, hidden_state_loss="mse"), teacher_model=tiny_deit(seed=1)
    )
    batch = {"pixel_values": torch.randn(4, 3, 8, 8), "labels": torch.arange(4) % len(CLASSES)}
    with torch.no_grad():
        trainer.compute_loss(trainer.model.eval(), batch)
    logged = trainer.loss_log.pop("eval")
    assert {"loss_ce", "loss_kd", "loss_hidden_state"} <= set(logged) and logged["loss_hidden_state"] > 0
