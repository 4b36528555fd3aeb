"""Structured pruning: heads, FFN neurons and layers physically removed; the pruned model saves and reloads."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hf_distill import DataCollatorForDistillation, DistillationTrainer
from hf_distill.methods.pruning import PruningArguments, head_importance, load_pruned_model, prune_model, prune_student
from hf_distill.teachers.loading import load_teacher
from hf_distill.text.students import create_student
from tests.conftest import make_args, tiny_bert, tiny_text_dataset


def batches(n_batches: int = 2, seed: int = 0):
    collator = DataCollatorForDistillation()
    data = tiny_text_dataset(16, seed=seed).rename_column("label", "labels").remove_columns("text")
    return [collator([data[i] for i in range(j * 8, j * 8 + 8)]) for j in range(n_batches)]


def model_inputs(batch):
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}


@pytest.fixture
def model():
    return tiny_bert(seed=3, layers=3, hidden=32)  # 2 heads of 16, FFN 64


def test_importance_shapes_and_gates_leave_the_forward_unchanged(model):
    batch = batches(1)[0]
    before = model(**model_inputs(batch)).logits
    importance = head_importance(model, [batch])
    assert importance.heads.shape == (3, 2) and importance.ffn.shape == (3, 64) and importance.layers.shape == (3,)
    assert (importance.heads > 0).all() and (importance.layers > 0).all()
    torch.testing.assert_close(model(**model_inputs(batch)).logits, before)  # hooks removed


def test_importance_matches_finite_difference_of_the_loss(model):
    """dL/d gate of a layer equals the loss change of scaling that layer's residual update, to first order."""
    model = model.double()
    batch = batches(1)[0]
    importance = head_importance(model, [batch])
    layer = model.bert.encoder.layer[1]
    eps = 1e-4

    def loss_with_gate(gate):
        handle = layer.register_forward_hook(lambda m, a, out: a[0] + gate * (out - a[0]))
        with torch.no_grad():
            value = model(**batch).loss
        handle.remove()
        return value

    slope = (loss_with_gate(1 + eps) - loss_with_gate(1 - eps)) / (2 * eps)
    assert float(slope.abs()) == pytest.approx(float(importance.layers[1]), rel=1e-4)


def test_pruning_nothing_leaves_outputs_unchanged(model):
    batch = batches(1)[0]
    pruned = prune_model(model, head_importance(model, [batch]))
    assert pruned.num_parameters() == model.num_parameters()
    torch.testing.assert_close(pruned(**model_inputs(batch)).logits, model(**model_inputs(batch)).logits)


def test_pruned_ffn_and_layers_reload_with_auto_class(model, tmp_path):
    batch = batches(1)[0]
    importance = head_importance(model, [batch])
    pruned = prune_model(model, importance, ffn=0.5, layers=1)
    assert pruned.num_parameters() < model.num_parameters()
    assert pruned.config.num_hidden_layers == 2 and pruned.config.intermediate_size == 32
    dropped = int(importance.layers.argmin())
    assert len(pruned.bert.encoder.layer) == 2 and model.config.num_hidden_layers == 3  # the original is untouched
    kept = [i for i in range(3) if i != dropped]
    torch.testing.assert_close(
        pruned.bert.encoder.layer[0].attention.self.query.weight,
        model.bert.encoder.layer[kept[0]].attention.self.query.weight,
    )
    pruned.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.num_parameters() == pruned.num_parameters()
    torch.testing.assert_close(reloaded(**model_inputs(batch)).logits, pruned(**model_inputs(batch)).logits)


def test_pruned_heads_are_sliced_and_reload(model, tmp_path):
    batch = batches(1)[0]
    importance = head_importance(model, [batch])
    pruned = prune_model(model, importance, heads=0.5)
    attention = pruned.bert.encoder.layer[0].attention
    assert attention.self.query.out_features == 16 and attention.output.dense.in_features == 16
    assert pruned.config.pruned_heads == {i: [int(importance.heads[i].argmin())] for i in range(3)}
    logits = pruned(**model_inputs(batch)).logits
    # The same function as the unpruned model with the removed heads' outputs zeroed.
    mask = torch.ones(3, 2)
    for i, heads in pruned.config.pruned_heads.items():
        mask[i, heads] = 0
    hooks = [
        layer.attention.self.register_forward_hook(
            lambda m, a, out, i=i: ((out[0].view(*out[0].shape[:-1], 2, 16) * mask[i, :, None]).flatten(-2), out[1])
        )
        for i, layer in enumerate(model.bert.encoder.layer)
    ]
    torch.testing.assert_close(logits, model(**model_inputs(batch)).logits)
    for hook in hooks:
        hook.remove()
    pruned.save_pretrained(tmp_path)
    reloaded = load_pruned_model(tmp_path)
    torch.testing.assert_close(reloaded(**model_inputs(batch)).logits, logits)


def test_prune_student_reports_size_and_latency(model):
    data = tiny_text_dataset(16).rename_column("label", "labels").remove_columns("text")
    args = PruningArguments(
        prune_heads=0.5, prune_ffn=0.5, pruning_samples=16, pruning_batch_size=8, latency_seconds=0.1
    )
    pruned, metrics = prune_student(model, data, DataCollatorForDistillation(), args)
    assert metrics["parameters_after"] == pruned.num_parameters() < metrics["parameters_before"]
    assert metrics["latency_ms_before"] > 0 and metrics["latency_ms_after"] > 0
    with pytest.raises(ValueError, match="share"):
        PruningArguments(prune_ffn=1.0)
    with pytest.raises(ValueError, match="layers"):
        prune_model(model, head_importance(model, batches(1)), layers=3)


@pytest.fixture
def head_pruned(model, tmp_path):
    """A head-pruned classifier saved to a folder, and its logits on a batch."""
    batch = batches(1)[0]
    pruned = prune_model(model, head_importance(model, [batch]), heads=0.5).eval()
    pruned.save_pretrained(tmp_path / "pruned")
    with torch.no_grad():
        logits = pruned(**model_inputs(batch)).logits
    return str(tmp_path / "pruned"), batch, logits


def test_a_head_pruned_model_loads_wherever_the_library_loads_a_model(head_pruned, model, tmp_path):
    path, batch, logits = head_pruned
    with pytest.raises(
        RuntimeError, match="ignore_mismatched_sizes"
    ):  # the Auto classes cannot rebuild it (transformers 5)
        AutoModelForSequenceClassification.from_pretrained(path)
    teacher = load_teacher(path)  # teachers, `hf-distill compare` models
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        torch.testing.assert_close(teacher(**model_inputs(batch)).logits, logits)
    trainer = DistillationTrainer(
        model=tiny_bert(seed=4, layers=3, hidden=32),
        args=make_args(tmp_path),
        teacher_model=path,  # as --teacher_model_name_or_path
        train_dataset=tiny_text_dataset(8).remove_columns("text"),
        data_collator=DataCollatorForDistillation(),
    )
    trainer.train()
    assert trainer.teacher_model.bert.encoder.layer[0].attention.self.query.out_features == 16
    student = create_student("pretrained", model, name_or_path=path)  # a pruned student trained further
    with torch.no_grad():
        torch.testing.assert_close(student(**model_inputs(batch)).logits, logits)
    with pytest.raises(ValueError, match="head-pruned.*labels"):
        create_student("pretrained", model, name_or_path=path, labels=["a", "b", "c"])
    # control: an unpruned folder still loads through the Auto class
    model.save_pretrained(tmp_path / "full")
    assert load_teacher(str(tmp_path / "full")).num_parameters() == model.num_parameters()


def test_load_pruned_model_reads_sharded_weights_and_a_dtype(head_pruned, tmp_path):
    path, batch, logits = head_pruned
    load_pruned_model(path).save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    reloaded = load_pruned_model(tmp_path / "sharded", dtype=torch.float64)
    assert reloaded.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**model_inputs(batch)).logits.float(), logits)


def test_latency_uses_the_shared_timer_and_restores_the_training_mode(model):
    import time

    from hf_distill.methods.pruning import latency_ms

    class Slow(torch.nn.Module):
        def forward(self, **inputs):
            time.sleep(0.004)
            return model(**inputs)

    slow = Slow().train()
    model.train()
    latency = latency_ms({"fast": model, "slow": slow}, batches(1)[0], seconds=0.1)
    assert 4.0 <= latency["slow"] and latency["fast"] < latency["slow"]
    assert model.training and slow.training
