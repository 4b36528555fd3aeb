import math

import pytest
import torch

from hf_distill.methods.intermediate import (
    attention_kl,
    hidden_state_cosine,
    hidden_state_mse,
    parse_layer_map,
    uniform_layer_map,
)


def _mask(batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    return (torch.arange(length) < lengths[:, None]).long()


def _attention(batch, heads, length, mask, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, heads, length, length, generator=g, dtype=torch.float64) * scale
    scores = scores.masked_fill(mask[:, None, None, :] == 0, -math.inf)  # as eager attention masks padded keys
    return scores.softmax(-1)


def test_uniform_layer_map_is_tinybert_map():
    assert uniform_layer_map(3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert uniform_layer_map(2, 2) == [(0, 0), (1, 1)]
    assert uniform_layer_map(4, 2) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert parse_layer_map(None, 3, 6) == parse_layer_map("0:1,1:3,2:5", 3, 6)


@pytest.mark.parametrize("spec", ["0-1", "0:1,0:2", "0:6", "3:0", "a:b"])
def test_bad_layer_maps_are_refused(spec):
    with pytest.raises(ValueError, match="layer_map"):
        parse_layer_map(spec, 3, 6)


@pytest.mark.parametrize("batch,length,width", [(1, 1, 4), (3, 7, 16), (5, 12, 384)])
def test_hidden_state_losses_match_float64_reference(batch, length, width):
    g = torch.Generator().manual_seed(batch)
    student = torch.randn(batch, length, width, generator=g, dtype=torch.float64)
    teacher = torch.randn(batch, length, width, generator=g, dtype=torch.float64) * 2 + 0.5
    mask = _mask(batch, length, batch)
    rows = mask.bool()
    ref_mse = ((student - teacher) ** 2)[rows].mean()
    s, t = student[rows], teacher[rows]
    ref_cos = (1 - (s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1))).mean()
    torch.testing.assert_close(hidden_state_mse(student.float(), teacher.float(), mask).double(), ref_mse)
    torch.testing.assert_close(hidden_state_cosine(student.float(), teacher.float(), mask).double(), ref_cos)
    # Without a mask every token counts.
    torch.testing.assert_close(
        hidden_state_mse(student.float(), teacher.float()).double(), ((student - teacher) ** 2).mean()
    )


@pytest.mark.parametrize("batch,heads,length", [(1, 1, 1), (2, 4, 6), (4, 2, 17)])
def test_attention_kl_matches_float64_reference(batch, heads, length):
    mask = _mask(batch, length, heads)
    student = _attention(batch, heads, length, mask, seed=1)
    teacher = _attention(batch, heads, length, mask, seed=2, scale=6.0)
    terms = torch.where(teacher > 0, teacher * (teacher.log() - student.log()), torch.zeros_like(teacher))
    kl = terms.sum(-1)  # (B, H, L)
    reference = kl.permute(0, 2, 1)[mask.bool()].mean()
    loss = attention_kl(student.float(), teacher.float(), mask)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)
    assert attention_kl(teacher.float(), teacher.float(), mask).abs() < 1e-6


def test_attention_kl_is_finite_with_gradients_through_masked_keys():
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    scores = torch.randn(1, 2, 5, 5, requires_grad=True)
    student = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(torch.float32).min).softmax(-1)
    teacher = _attention(1, 2, 5, mask, seed=3).float()
    attention_kl(student, teacher, mask).backward()
    assert torch.isfinite(scores.grad).all()


def test_attention_kl_averages_heads_when_counts_differ():
    mask = torch.ones(2, 5, dtype=torch.long)
    student, teacher = _attention(2, 2, 5, mask, seed=4), _attention(2, 4, 5, mask, seed=5)
    expected = attention_kl(student.mean(1, keepdim=True).float(), teacher.mean(1, keepdim=True).float(), mask)
    torch.testing.assert_close(attention_kl(student.float(), teacher.float(), mask), expected)


# ---- in the trainer ----

import os  # noqa: E402

from safetensors.torch import load_file  # noqa: E402

from hf_distill import DataCollatorForDistillation, DistillationTrainer, precompute_teacher_logits  # noqa: E402
from hf_distill.methods.intermediate import PROJECTIONS_FILE  # noqa: E402
from tests.conftest import LABELS, make_args, on_device, tiny_bert, tiny_vit  # noqa: E402

INTERMEDIATE = dict(hidden_state_loss="mse", attention_loss="kl", hidden_state_weight=0.5, attention_weight=2.0)


def intermediate_trainer(tmp_path, data, student=None, teacher=None, **overrides):
    return DistillationTrainer(
        model=student if student is not None else tiny_bert(seed=2, hidden=16, layers=2),
        args=make_args(tmp_path, **{**INTERMEDIATE, **overrides}),
        teacher_model=teacher if teacher is not None else tiny_bert(seed=1, hidden=32, layers=4),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )


def _kl64(student_logits, teacher_logits, temperature):
    log_q = (student_logits / temperature).log_softmax(-1)
    log_p = (teacher_logits / temperature).log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean() * temperature**2


def test_loss_between_widths_matches_float64_reference(tmp_path, data):
    trainer = intermediate_trainer(tmp_path, data, alpha=0.3, layer_map="0:1,1:3")
    assert trainer.objective.terms[0].projections is not None  # 16 -> 32
    batch = on_device(trainer, trainer.data_collator([data[i] for i in range(8)]))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    student = trainer.model.double()
    teacher = trainer.teacher_model.double()
    projections = trainer.objective.terms[0].projections.double()
    mask = batch["attention_mask"]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": mask}
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True, output_attentions=True)
        t = teacher(**inputs, output_hidden_states=True, output_attentions=True)
        rows = mask.bool()
        hidden, attention = [], []
        for i, (ls, lt) in enumerate([(0, 1), (1, 3)]):
            hidden.append(((projections[i](s.hidden_states[ls + 1]) - t.hidden_states[lt + 1]) ** 2)[rows].mean())
            ps, pt = s.attentions[ls], t.attentions[lt]
            terms = torch.where(pt > 0, pt * (pt.log() - ps.log()), torch.zeros_like(pt)).sum(-1)
            attention.append(terms.permute(0, 2, 1)[rows].mean())
        ce = torch.nn.functional.cross_entropy(s.logits, batch["labels"])
        reference = (
            0.3 * ce
            + 0.7 * _kl64(s.logits, t.logits, 2.0)
            + 0.5 * torch.stack(hidden).mean()
            + 2.0 * torch.stack(attention).mean()
        )
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)


def test_trains_between_widths_logs_parts_and_keeps_projections_out_of_the_student(tmp_path, data):
    trainer = intermediate_trainer(tmp_path, data, max_steps=4, save_strategy="steps", save_steps=2)
    before = {k: v.clone() for k, v in trainer.objective.terms[0].state_dict().items()}
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["loss_hidden_state"] > 0 and logged["loss_attention"] > 0
    after = trainer.objective.terms[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the projections were not trained"
    checkpoint = tmp_path / "out" / "checkpoint-4"
    saved = load_file(checkpoint / PROJECTIONS_FILE)
    for name, value in after.items():
        torch.testing.assert_close(saved[name], value)
    trainer.save_model(str(tmp_path / "final"))
    student_keys = set(trainer.model.state_dict())
    for folder in (checkpoint, tmp_path / "final"):
        weights = load_file(folder / "model.safetensors")
        assert not any("projection" in key for key in weights)
        assert set(weights) <= student_keys
    assert not os.path.exists(tmp_path / "final" / PROJECTIONS_FILE)


def test_resume_restores_the_projections(tmp_path, data):
    full = intermediate_trainer(tmp_path / "full", data, max_steps=4, save_strategy="steps", save_steps=2)
    full.train()
    checkpoint = str(tmp_path / "full" / "out" / "checkpoint-2")
    saved = load_file(os.path.join(checkpoint, PROJECTIONS_FILE))

    # Resuming where nothing is left to train loads the projections and leaves them as saved.
    loaded = intermediate_trainer(tmp_path / "loaded", data, max_steps=2)
    loaded.train(resume_from_checkpoint=checkpoint)
    for name, value in loaded.objective.terms[0].state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)

    # Resuming and training on ends where the uninterrupted run ended, projections and student alike.
    resumed = intermediate_trainer(tmp_path / "resumed", data, max_steps=4)
    resumed.train(resume_from_checkpoint=checkpoint)
    for name, value in resumed.objective.terms[0].state_dict().items():
        torch.testing.assert_close(value, full.objective.terms[0].state_dict()[name])
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, full.model.state_dict()[name])


def test_resuming_a_save_only_model_checkpoint_names_save_only_model(tmp_path, data):
    lean = intermediate_trainer(tmp_path / "lean", data, max_steps=2, save_strategy="steps", save_steps=2)
    lean.args.save_only_model = True
    lean.train()
    checkpoint = str(tmp_path / "lean" / "out" / "checkpoint-2")
    assert not os.path.exists(os.path.join(checkpoint, PROJECTIONS_FILE))
    resumed = intermediate_trainer(tmp_path / "resumed", data, max_steps=4)
    with pytest.raises(ValueError, match="save_only_model=True") as error:
        resumed.train(resume_from_checkpoint=checkpoint)
    assert "same hidden_state_loss" not in str(error.value)
    assert resumed.state.global_step == 2  # refused while loading, before any further optimizer step
    # control: a full checkpoint whose projections file is missing still names the hidden_state_loss
    full = intermediate_trainer(tmp_path / "full", data, max_steps=2, save_strategy="steps", save_steps=2)
    full.train()
    os.remove(tmp_path / "full" / "out" / "checkpoint-2" / PROJECTIONS_FILE)
    with pytest.raises(ValueError, match="same hidden_state_loss"):
        intermediate_trainer(tmp_path / "again", data, max_steps=4).train(
            resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-2")
        )


def test_teacher_with_another_tokenizer_is_refused(tmp_path, data):
    """Teacher-prefixed inputs (another tokenizer) put other tokens at each position: the layers cannot be compared."""
    prefixed = data.add_column("teacher_input_ids", [[2, 7, 3]] * len(data))
    with pytest.raises(ValueError, match=r"teacher alone \(teacher_input_ids.*student's tokenizer"):
        intermediate_trainer(tmp_path, prefixed, hidden_state_loss="mse", attention_loss=None)
    with pytest.raises(ValueError, match="token positions do not correspond"):
        intermediate_trainer(tmp_path, data, hidden_state_loss=None, attention_loss="kl").get_eval_dataloader(prefixed)
    # control: the same teacher on the student's inputs trains
    intermediate_trainer(tmp_path, data, hidden_state_loss="mse", attention_loss=None, max_steps=1).train()


def test_precomputed_teacher_logits_are_refused(tmp_path, data):
    teacher = tiny_bert(seed=1, hidden=32, layers=4)
    stored = precompute_teacher_logits(teacher, data, batch_size=8)
    with pytest.raises(ValueError, match="never precomputed.*teacher_logits"):
        intermediate_trainer(tmp_path, stored, teacher=teacher)
    with pytest.raises(ValueError, match="never precomputed"):
        DistillationTrainer(
            model=tiny_bert(seed=2), args=make_args(tmp_path, hidden_state_loss="cosine"), train_dataset=stored
        )


def test_bad_options_are_refused_when_parsed(tmp_path):
    with pytest.raises(ValueError, match="hidden_state_loss must be one of mse, cosine"):
        make_args(tmp_path, hidden_state_loss="l1")
    with pytest.raises(ValueError, match="attention_weight must be >= 0"):
        make_args(tmp_path, attention_loss="kl", attention_weight=-1.0)


def test_vit_students_distil_hidden_states_and_attention(tmp_path, caplog):
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    images = Dataset.from_dict(
        {"pixel_values": torch.randn(8, 1, 8, 8, generator=g).tolist(), "label": [0, 1, 2, 0, 1, 2, 0, 1]}
    )
    student = tiny_vit(2, channels=1, hidden=16, layers=2, labels=LABELS)
    teacher = tiny_vit(1, channels=1, hidden=24, layers=4, heads=4, labels=LABELS)
    assert student.config._attn_implementation != "eager"
    trainer = intermediate_trainer(tmp_path, images, student=student, teacher=teacher, hidden_state_loss="cosine")
    assert student.config._attn_implementation == "eager" and teacher.config._attn_implementation == "eager"
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss_hidden_state"]) and logged["loss_attention"] > 0
    assert "eval_loss_attention" in trainer.evaluate()


def test_no_intermediate_parts_once_kd_switches_to_ce(tmp_path, data):
    trainer = intermediate_trainer(tmp_path, data, max_steps=3, distillation_steps=1)
    trainer.train()
    steps = [log for log in trainer.state.log_history if "loss" in log]
    assert "loss_hidden_state" in steps[0] and "loss_attention" in steps[0]
    assert all("loss_hidden_state" not in log and "loss_kd" not in log for log in steps[1:])
