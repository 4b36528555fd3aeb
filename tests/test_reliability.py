"""Trustworthy by default (issue 10): every input trains what the user meant or stops before the first step with a
clear error; a run never ends with a NaN student; nothing on disk is lost on a rerun."""

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, concatenate_datasets
from PIL import Image
from transformers import BertModel, TrainerCallback

from hf_distill import DataCollatorForDistillation, DistillationTrainer, precompute_teacher_logits
from hf_distill.teachers.loading import load_teacher
from hf_distill.text.data import TextDataArguments, load_text_dataset, tokenize_for_distillation
from hf_distill.vision import ImageDataArguments, prepare_image_splits
from hf_distill.workflow.checkpoints import resolve_checkpoint
from tests.conftest import LABELS, make_args, permuted_teacher, tiny_bert, tiny_text_dataset, varied_bert


@pytest.fixture
def data():
    return tiny_text_dataset(16).remove_columns("text")


def trainer_for(tmp_path, data, teacher=None, student=None, **overrides):
    return DistillationTrainer(
        model=student or tiny_bert(seed=2),
        args=make_args(tmp_path, **overrides),
        teacher_model=teacher,
        train_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )


# ---- 1. labels aligned by name ----


def test_trainer_refuses_class_label_names_in_another_order_and_accepts_them_realigned(tmp_path, data):
    names = ["positive", "negative", "neutral"]
    shuffled = data.cast_column("label", ClassLabel(names=names))
    with pytest.raises(ValueError, match=r"same classes in another order.*align_labels_with_mapping"):
        trainer_for(tmp_path, shuffled, tiny_bert(seed=1))
    student = tiny_bert(seed=2)
    realigned = shuffled.align_labels_with_mapping(student.config.label2id, "label")
    trainer = trainer_for(tmp_path, realigned, tiny_bert(seed=1), student=student)
    expected = [names[i] for i in shuffled["label"]]
    assert [LABELS[i] for i in trainer.train_dataset["label"]] == expected
    with pytest.raises(ValueError, match=r"names the classes \['sad', 'calm', 'happy'\]"):
        trainer_for(tmp_path, data.cast_column("label", ClassLabel(names=["sad", "calm", "happy"])), tiny_bert(1))


# ---- 3. arguments checked when the trainer starts; non-finite losses stop the run ----


def test_arguments_changed_after_construction_are_checked_when_the_trainer_starts(tmp_path, data):
    args = make_args(tmp_path)
    args.alpha = 2
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\].*got 2"):
        DistillationTrainer(model=tiny_bert(), args=args, teacher_model=tiny_bert(1), train_dataset=data)
    trainer = trainer_for(tmp_path, data, tiny_bert(seed=1))
    trainer.args.temperature = float("inf")
    with pytest.raises(ValueError, match="temperature must be finite"):
        trainer.train()
    assert trainer.state.global_step == 0


class PoisonAt(TrainerCallback):
    """Sets the student's classifier weights to NaN when a step starts: the student has diverged."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.classifier.weight.fill_(float("nan"))


def test_a_diverged_student_stops_the_run_and_is_never_saved(tmp_path, data):
    trainer = trainer_for(
        tmp_path, data, tiny_bert(seed=1), max_steps=4, logging_steps=2, save_strategy="steps", save_steps=1
    )
    trainer.add_callback(PoisonAt(step=1))
    with pytest.raises(FloatingPointError, match=r"CE \(hard-label cross-entropy\) and the distillation term"):
        trainer.train()
    out = tmp_path / "out"
    assert (out / "checkpoint-1").is_dir() and not (out / "checkpoint-2").exists()
    with pytest.raises(FloatingPointError):
        trainer.save_model()
    assert not (out / "model.safetensors").exists()


def test_a_teacher_going_non_finite_mid_run_is_named(tmp_path, data):
    teacher, calls = tiny_bert(seed=1), []

    def poison(module, inputs, output):
        calls.append(1)
        return output * float("nan") if len(calls) > 1 else output

    teacher.classifier.register_forward_hook(poison)
    trainer = trainer_for(tmp_path, data, teacher, max_steps=2, logging_steps=2)
    with pytest.raises(FloatingPointError, match="teacher produced NaN/inf logits by step"):
        trainer.train()


# ---- 4. precomputed columns ----


def test_concatenated_columns_of_different_label_orders_are_refused(tmp_path, data):
    teacher = tiny_bert(seed=1)
    first = precompute_teacher_logits(teacher, data.select(range(8)), batch_size=8)
    second = precompute_teacher_logits(permuted_teacher(teacher, [2, 0, 1]), data.select(range(8, 16)), batch_size=8)
    with pytest.raises(ValueError, match="joins logits of different layouts.*precompute the column again"):
        trainer_for(tmp_path, concatenate_datasets([first, second]))
    same = concatenate_datasets([first, precompute_teacher_logits(teacher, data.select(range(8, 16)), batch_size=8)])
    trainer_for(tmp_path, same)  # one teacher in two parts is fine


def test_a_ragged_logits_column_is_refused_not_padded(tmp_path, data):
    rows = [[0.1, 0.2, 0.3]] * len(data)
    rows[5] = [0.1, 0.2]
    with pytest.raises(ValueError, match="ragged: its rows hold from 2 to 3 values"):
        trainer_for(tmp_path, data.add_column("teacher_logits", rows))


# ---- 5. TrainingArguments honoured ----


def test_label_smoothing_applies_to_the_ce_term(tmp_path, data):
    """The loss with label_smoothing_factor equals a float64 reference."""
    teacher, student = varied_bert(seed=1), varied_bert(seed=2)
    trainer = trainer_for(
        tmp_path, data, teacher, student=student, alpha=0.6, temperature=3.0, label_smoothing_factor=0.2
    )
    batch = trainer._prepare_inputs(trainer.data_collator([data[i] for i in range(8)]))
    student.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(student, batch)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        s, t = student(**inputs).logits.double(), teacher(**inputs).logits.double()
    labels = batch["labels"]
    log_p = s.log_softmax(-1)
    smoothed = F.one_hot(labels, 3).double() * 0.8 + 0.2 / 3
    ce = -(smoothed * log_p).sum(-1).mean()
    log_ps, log_pt = (s / 3.0).log_softmax(-1), (t / 3.0).log_softmax(-1)
    kd = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean() * 9.0
    assert loss.item() == pytest.approx((0.6 * ce + 0.4 * kd).item(), rel=1e-5)
    assert ce.item() != pytest.approx(F.cross_entropy(s, labels).item(), rel=1e-3)  # smoothing changed the CE


# ---- 6. gradient accumulation with ignored labels ----


def test_gradient_accumulation_with_unevenly_ignored_labels_matches_a_full_batch(tmp_path, data):
    """bs 8 x GA 1 and bs 4 x GA 2 give the same loss and gradients when -100 labels sit in one micro-batch."""
    uneven = data.select(range(8)).map(
        lambda row, i: {"label": -100 if i in (0, 1, 2) else row["label"]}, with_indices=True
    )
    logs = []
    for bs, ga in [(8, 1), (4, 2), (2, 4)]:
        trainer = trainer_for(
            tmp_path,
            uneven,
            varied_bert(seed=1),
            student=varied_bert(seed=2),
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            max_steps=1,
            alpha=0.7,
        )
        trainer.train()
        logs.append(trainer.state.log_history[0])
    for accumulated in logs[1:]:
        for key in ("loss", "grad_norm", "loss_ce", "loss_kd"):
            assert accumulated[key] == pytest.approx(logs[0][key], rel=1e-4), key


# ---- 7. bad data ----


@pytest.mark.parametrize("values", [[0.0, 1.0, 2.0, 1.0] * 4, ["negative", "neutral", "positive", "neutral"] * 4])
def test_float_or_string_label_columns_are_refused(tmp_path, data, values):
    bad = data.remove_columns("label").add_column("label", values)
    with pytest.raises(TypeError, match="labels must be integer class ids.*ClassLabel"):
        trainer_for(tmp_path, bad, tiny_bert(seed=1))


def test_float_labels_from_a_torch_dataset_are_refused_at_the_first_batch(tmp_path, data):
    rows = [{**row, "label": float(row["label"])} for row in data]  # a plain list: no dataset check before training
    trainer = trainer_for(tmp_path, rows, tiny_bert(seed=1))
    with pytest.raises(TypeError, match="labels are torch.float32, but they must be integer class ids"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_empty_data_files_and_cells_are_refused(tmp_path, word_tokenizer):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv is empty"):
        load_text_dataset(train_file=str(empty))
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    with pytest.raises(ValueError, match="header.csv has a header but no rows"):
        load_text_dataset(train_file=str(header))
    with pytest.raises(FileNotFoundError, match="missing.csv not found"):
        load_text_dataset(train_file=str(tmp_path / "missing.csv"))
    cell = tmp_path / "cell.csv"
    cell.write_text("text,label\ngood movie,positive\n,negative\n")
    raw = load_text_dataset(train_file=str(cell))
    with pytest.raises(ValueError, match=r"Text column 'text' is empty \(or not text\) in row\(s\) \[1\]"):
        tokenize_for_distillation(raw, word_tokenizer, text_columns=["text"], labels=LABELS)


def test_max_seq_length_zero_is_refused():
    with pytest.raises(ValueError, match="max_seq_length must be >= 1"):
        TextDataArguments(max_seq_length=0)


def test_a_corrupt_image_is_named_when_the_dataset_is_prepared(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good, format="PNG")
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "train" / name / f"{i}.png").write_bytes(good.getvalue())
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), train_val_split=0.5)
    prepare_image_splits(args, seed=0)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(good.getvalue()[:40])  # truncated
    with pytest.raises(ValueError, match=r"Image .*dog/broken.png cannot be read"):
        prepare_image_splits(args, seed=0)


def test_a_missing_teacher_path_is_not_found_and_a_headless_teacher_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_teacher(str(tmp_path / "no" / "teacher"))
    BertModel(tiny_bert().config).save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match="no trained classification head.*classifier.weight"):
        load_teacher(str(tmp_path / "base"))


# ---- 2. reruns ----


def test_rerun_resumes_from_the_last_checkpoint_or_refuses(tmp_path):
    out = tmp_path / "out"
    args = make_args(tmp_path, do_train=True)
    resolve_checkpoint(args)  # nothing there yet
    assert args.resume_from_checkpoint is None
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-4").mkdir()
    args = make_args(tmp_path, do_train=True)
    resolve_checkpoint(args)
    assert args.resume_from_checkpoint == str(out / "checkpoint-4")
    args = make_args(tmp_path, do_train=True, resume_from_checkpoint="True")
    resolve_checkpoint(args)
    assert args.resume_from_checkpoint == str(out / "checkpoint-4")
    args = make_args(tmp_path, do_train=True, overwrite_output_dir=True)
    resolve_checkpoint(args)
    assert args.resume_from_checkpoint is None
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "all_results.json").write_text("{}")
    with pytest.raises(ValueError, match="not empty and holds no checkpoint.*--overwrite_output_dir"):
        resolve_checkpoint(make_args(tmp_path, output_dir=str(finished), do_train=True))
    with pytest.raises(ValueError, match="--resume_from_checkpoint True, but .* holds no checkpoint"):
        resolve_checkpoint(
            make_args(tmp_path, output_dir=str(tmp_path / "new"), do_train=True, resume_from_checkpoint="True")
        )


# ---- property test: random datasets and arguments ----


def float64_reference(student, teacher, batch, alpha, temperature, smoothing):
    """``alpha * CE + (1 - alpha) * T^2 KL`` in float64, the CE averaged over the labelled rows of the whole batch."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s, t = student.double()(**inputs).logits, teacher.double()(**inputs).logits
    log_ps, log_pt = (s / temperature).log_softmax(-1), (t / temperature).log_softmax(-1)
    kd = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean() * temperature**2
    labels = batch["labels"]
    keep = labels != -100
    if not keep.any():
        return ((1 - alpha) * kd).item(), 0.0, kd.item()
    target = F.one_hot(labels[keep], 3).double() * (1 - smoothing) + smoothing / 3
    ce = -(target * s[keep].log_softmax(-1)).sum(-1).mean()
    return (alpha * ce + (1 - alpha) * kd).item(), ce.item(), kd.item()


def test_random_datasets_and_arguments_train_right_or_fail_before_the_first_step(tmp_path):
    """Random label orders (teacher, ClassLabel), -100 patterns, label dtypes, GA splits and arguments: either a
    ValueError/TypeError before the first step, or finite weights and a first loss equal to a float64 reference."""
    rng = np.random.default_rng(0)
    outcomes = {"refused": 0, "trained": 0}
    for case in range(15):
        n, (bs, ga) = 8, [(8, 1), (4, 2), (2, 4)][case % 3]
        order = [int(i) for i in rng.permutation(3)]
        dataset = tiny_text_dataset(n, seed=case, ragged=False).remove_columns("text")
        labels = [int(v) if rng.random() > 0.3 else -100 for v in dataset["label"]]
        kind = str(rng.choice(["int", "int", "int", "float", "string", "classlabel"]))
        if kind == "float":
            labels = [float(v) for v in labels]
        elif kind == "string":
            labels = [str(v) for v in labels]
        elif kind == "classlabel":  # ClassLabel holds no -100
            labels = [max(v, 0) for v in labels]
        dataset = dataset.remove_columns("label").add_column("label", labels)
        if kind == "classlabel":
            dataset = dataset.cast_column("label", ClassLabel(names=[LABELS[i] for i in order]))
        alpha = float(rng.choice([0.0, 0.3, 1.0, 1.5]))
        temperature = float(rng.choice([1.0, 4.0, 0.0, math.inf]))
        smoothing = float(rng.choice([0.0, 0.1]))
        teacher = permuted_teacher(varied_bert(seed=1), order)  # the same function, classes stored in `order`
        options = dict(per_device_train_batch_size=bs, gradient_accumulation_steps=ga, max_steps=1, alpha=alpha)
        options.update(temperature=temperature, label_smoothing_factor=smoothing)
        valid = 0 <= alpha <= 1 and 0 < temperature < math.inf
        valid = valid and (kind == "int" or (kind == "classlabel" and order == [0, 1, 2]))
        try:
            if rng.random() > 0.5:
                trainer = trainer_for(
                    tmp_path,
                    precompute_teacher_logits(teacher, dataset, batch_size=4),
                    student=varied_bert(2),
                    **options,
                )
            else:
                trainer = trainer_for(tmp_path, dataset, teacher, student=varied_bert(seed=2), **options)
        except (ValueError, TypeError) as error:
            assert not valid and len(str(error)) > 40, (case, error)  # refused with a message
            outcomes["refused"] += 1
            continue
        assert valid, case
        trainer.train()
        log = trainer.state.log_history[0]
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
        batch = trainer.data_collator([dataset[i] for i in range(n)])
        loss, ce, kd = float64_reference(
            varied_bert(seed=2), varied_bert(seed=1), batch, alpha, temperature, smoothing
        )
        assert log["loss"] == pytest.approx(loss, rel=1e-5, abs=1e-6), case
        assert log["loss_kd"] == pytest.approx(kd, rel=1e-5, abs=1e-6), case
        if "loss_ce" in log and any(v != -100 for v in labels):
            assert log["loss_ce"] == pytest.approx(ce, rel=1e-5, abs=1e-6), case
        outcomes["trained"] += 1
    assert outcomes["refused"] >= 3 and outcomes["trained"] >= 3, outcomes


def method_reference(student, teachers, weights, batch, loss, temperature, args, top_k=None):
    """The distillation term in float64: ``loss`` between the student and the teachers' weighted average
    distribution (one teacher: its own), or, with ``top_k``, the KL over the teacher's top-k classes and the rest."""
    from tests.references import dist_reference, dkd_reference, jsd_reference, kl64, probs

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s = student.double()(**inputs).logits
        target = sum(
            w * probs(t.double()(**inputs).logits, temperature) for t, w in zip(teachers, weights, strict=True)
        )
    if top_k is not None:
        top = target.topk(top_k, -1).indices
        ps = probs(s, temperature)

        def buckets(p):
            kept = p.gather(-1, top)
            return torch.cat([kept, 1 - kept.sum(-1, keepdim=True)], -1)

        return (kl64(buckets(target), buckets(ps)).mean() * temperature**2).item()
    t = temperature * target.log()  # logits whose softmax at T is the target
    if loss == "dkd":
        return dkd_reference(s, t, batch["labels"], temperature, args.dkd_alpha, args.dkd_beta).item()
    if loss == "dist":
        return dist_reference(s, t, temperature, args.dist_beta, args.dist_gamma).item()
    if loss == "jsd":
        return jsd_reference(s, t, temperature, args.jsd_beta).item()
    return (kl64(probs(t, temperature), probs(s, temperature)).mean() * temperature**2).item()


def hidden_state_reference(student, teacher, batch):
    """``layer_map="0:0,1:1"`` MSE between equal-width hidden states, over the real tokens, averaged over layers."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s = student.double()(**inputs, output_hidden_states=True).hidden_states
        t = teacher.double()(**inputs, output_hidden_states=True).hidden_states
    mask = batch.get("attention_mask", torch.ones(batch["input_ids"].shape)).double()
    per_layer = [(((s[i] - t[i]) ** 2).mean(-1) * mask).sum() / mask.sum() for i in (1, 2)]
    return torch.stack(per_layer).mean().item()


def test_random_methods_schedules_and_sources_train_right_or_fail_before_the_first_step(tmp_path):
    """Random losses (kl, dkd, dist, jsd), schedules (alpha, temperature, KD then CE, two-stage), hidden-state terms,
    teacher sources (in the loop, a column, top-k, a K-view-shaped column, several teachers in the loop or as columns)
    and labels (some or none): either a ValueError/TypeError before the first optimizer step, or finite weights and a
    first loss (and each part) equal to a float64 reference at the schedule's first values."""
    rng = np.random.default_rng(1)
    outcomes = {"refused": 0, "trained": 0}
    teacher_a, teacher_b = varied_bert(seed=1), varied_bert(seed=3)
    base = tiny_text_dataset(8, seed=5, ragged=False).remove_columns("text")
    some_labels = base.map(lambda row, i: {"label": -100 if i % 3 == 0 else row["label"]}, with_indices=True)
    no_labels = base.map(lambda _: {"label": -100})
    trained = set()
    for case in range(40):
        loss = str(rng.choice(["kl", "dkd", "dist", "jsd"], p=[0.4, 0.2, 0.2, 0.2]))
        sources = ["teacher", "column", "top-k", "K-view", "teachers", "columns"]
        source = str(rng.choice(sources, p=[0.2, 0.2, 0.2, 0.08, 0.16, 0.16]))
        schedule = str(rng.choice(["none", "alpha", "temperature", "kd then ce", "two-stage"]))
        alpha, temperature = float(rng.choice([0.0, 0.5])), float(rng.choice([1.0, 4.0]))
        hidden = bool(rng.random() < (0.5 if source == "teacher" else 0.1))  # layers need a teacher in the loop
        labelled = bool(rng.random() < 0.8)
        dataset = some_labels if labelled else no_labels
        options = dict(max_steps=2, alpha=alpha, temperature=temperature, distillation_loss=loss)
        end = None
        if schedule == "alpha":
            end = [None, 0.0, 0.8][rng.choice(3, p=[0.2, 0.4, 0.4])]
            options.update(alpha_schedule="cosine", alpha_end=end)
        elif schedule == "temperature":
            end = [None, 2.0][rng.choice(2, p=[0.25, 0.75])]
            options.update(temperature_schedule="linear", temperature_end=end)
        elif schedule == "kd then ce":
            end = int(rng.choice([1, 2], p=[0.75, 0.25]))
            options.update(distillation_steps=end)
        elif schedule == "two-stage":
            end = int(rng.choice([1, 2], p=[0.75, 0.25]))
            options.update(two_stage_steps=end)
        if hidden:
            options.update(hidden_state_loss="mse", layer_map="0:0,1:1", hidden_state_weight=0.5)
        weights = [1.0]
        teacher, train, top_k = None, dataset, None
        if source == "teacher":
            teacher = permuted_teacher(copy.deepcopy(teacher_a), [2, 0, 1])  # the same function, classes reordered
        elif source == "column":
            train = precompute_teacher_logits(permuted_teacher(copy.deepcopy(teacher_a), [1, 2, 0]), dataset)
        elif source == "top-k":
            top_k = 2
            train = precompute_teacher_logits(teacher_a, dataset, top_k=2, temperature=temperature, dtype="float32")
        elif source == "K-view":  # one stored view per row, read without the K-view transform
            logits = np.asarray(precompute_teacher_logits(teacher_a, dataset)["teacher_logits"])
            train = dataset.add_column("teacher_logits", logits[:, None, :].tolist())
        else:
            weights = [[0.5, 0.5], [0.7, 0.3]][int(rng.integers(2))]
            options.update(teacher_weights=",".join(map(str, weights)))
            if source == "teachers":
                teacher = [copy.deepcopy(teacher_a), copy.deepcopy(teacher_b)]
            else:
                train = precompute_teacher_logits(teacher_a, dataset, column="logits_a")
                train = precompute_teacher_logits(teacher_b, train, column="logits_b")
                options.update(teacher_logits_columns="logits_a,logits_b")
        needs_labels = alpha > 0 or loss == "dkd" or schedule == "kd then ce" or (schedule == "alpha" and end)
        valid = (
            not (schedule in ("alpha", "temperature") and end is None)  # a schedule without its end
            and not (schedule in ("kd then ce", "two-stage") and end >= 2)  # a switch beyond the run's 2 steps
            and source != "K-view"
            and not (source == "top-k" and (loss != "kl" or schedule == "temperature"))
            and not (hidden and source != "teacher")  # layers of one teacher, run in the loop
            and (labelled or not needs_labels)
        )
        student = varied_bert(seed=2)
        initial = [p.detach().clone() for p in student.parameters()]
        try:
            trainer = trainer_for(tmp_path, train, teacher, student=student, **options)
            trainer.train()
        except (ValueError, TypeError) as error:
            assert not valid and len(str(error)) > 40, (case, options, source, error)  # refused with a message
            assert all(torch.equal(a, b) for a, b in zip(initial, student.parameters(), strict=True)), case
            outcomes["refused"] += 1
            continue
        assert valid, (case, options, source)
        log = trainer.state.log_history[0]
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
        assert log["alpha"] == alpha and log["temperature"] == temperature  # the schedules' first values
        batch = trainer.data_collator(
            [{k: v for k, v in row.items() if k == "input_ids" or k == "label"} for row in dataset]
        )
        teachers = [varied_bert(seed=1), varied_bert(seed=3)][: len(weights)]
        kd = method_reference(varied_bert(seed=2), teachers, weights, batch, loss, temperature, trainer.args, top_k)
        assert log["loss_kd"] == pytest.approx(kd, rel=1e-5, abs=1e-6), (case, options, source)
        total = (1 - alpha) * kd
        if "loss_ce" in log and labelled:  # (no labelled row: alpha is 0 throughout, the CE weighs nothing)
            keep = batch["labels"] != -100
            with torch.no_grad():
                s = varied_bert(seed=2).double()(input_ids=batch["input_ids"]).logits
            ce = F.cross_entropy(s[keep], batch["labels"][keep]).item()
            assert log["loss_ce"] == pytest.approx(ce, rel=1e-5, abs=1e-6), case
            total += alpha * ce
        if hidden:
            reference = hidden_state_reference(varied_bert(seed=2), varied_bert(seed=1), batch)
            assert log["loss_hidden_state"] == pytest.approx(reference, rel=1e-5, abs=1e-6), case
            total += 0.5 * reference
        assert log["loss"] == pytest.approx(total, rel=1e-5, abs=1e-6), (case, options, source)
        outcomes["trained"] += 1
        trained |= {loss, source, schedule, *(["hidden states"] if hidden else [])}
    assert outcomes["refused"] >= 5 and outcomes["trained"] >= 10, outcomes
    drawn = {"kl", "dkd", "dist", "jsd", "teacher", "column", "top-k", "teachers", "columns", "hidden states"}
    assert trained >= drawn | {"alpha", "temperature", "kd then ce", "two-stage"}, trained


def test_evaluation_and_checkpoint_selection_arguments_are_honoured(tmp_path, data):
    """include_for_metrics, batch_eval_metrics, eval_do_concat_batches=False, prediction_loss_only and
    load_best_model_at_end on loss_kd (lowest kept) all run through DistillationTrainer's evaluation."""
    seen = []

    def metrics(prediction, compute_result=True):
        seen.append(prediction)  # the student's predictions first, then the teacher's logits
        return {"rows": float(len(prediction.label_ids))}

    def trainer(**overrides):
        return DistillationTrainer(
            model=tiny_bert(seed=2),
            args=make_args(tmp_path, **overrides),
            teacher_model=tiny_bert(seed=1),
            train_dataset=data,
            eval_dataset=data,
            data_collator=DataCollatorForDistillation(),
            compute_metrics=metrics,
        )

    result = trainer(include_for_metrics=["inputs", "loss"]).evaluate()
    assert seen[0].losses is not None and seen[0].inputs is not None and result["eval_rows"] == 16
    assert trainer(batch_eval_metrics=True).evaluate()["eval_rows"] == 8  # the last batch's result
    assert "eval_loss_kd" in trainer(eval_do_concat_batches=False, prediction_loss_only=True).evaluate()
    best = trainer(
        max_steps=3,
        learning_rate=0.05,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="loss_kd",
    )
    best.train()
    evals = {e["step"]: e["eval_loss_kd"] for e in best.state.log_history if "eval_loss_kd" in e}
    assert best.state.best_metric == min(evals.values())
    assert best.state.best_model_checkpoint.endswith(f"checkpoint-{min(evals, key=evals.get)}")


def test_image_split_seed_keeps_the_teachers_split_whatever_the_run_seed():
    def rows(seed: int, split_seed: int | None) -> dict[str, list[bytes]]:
        args = ImageDataArguments(dataset_name="sklearn_digits", max_train_samples=50, split_seed=split_seed)
        splits, _ = prepare_image_splits(args, seed=seed)
        return {name: [bytes(np.asarray(image)) for image in split["image"]] for name, split in splits.items()}

    teacher = rows(seed=42, split_seed=None)
    assert rows(seed=1, split_seed=42) == teacher  # the student evaluates on the teacher's held-out images
    moved = rows(seed=1, split_seed=None)
    assert set(moved["validation"]) - set(teacher["validation"])  # without it, teacher training images move in


def test_arguments_the_trainer_was_built_from_cannot_change_before_training(tmp_path, data):
    trainer = trainer_for(tmp_path, data, tiny_bert(seed=1))
    trainer.args.teacher_input_prefix = "t_"  # the teacher's inputs were set up with "teacher_"
    with pytest.raises(ValueError, match="teacher_input_prefix changed after the DistillationTrainer was built"):
        trainer.train()
    assert trainer.state.global_step == 0
    trainer.args.teacher_input_prefix = "teacher_"  # control: back to the built value, it trains
    trainer.train()
    assert trainer.state.global_step == 2
