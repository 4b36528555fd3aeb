import pytest
import torch

from hf_distill.losses import kl_divergence_loss
from hf_distill.teachers.ensemble import combine_teacher_logits, named_teachers, parse_teacher_weights
from hf_distill.teachers.sources import StoredColumns
from tests.conftest import on_device, permuted_teacher, tiny_bert, tiny_text_dataset, trainer_for, varied_bert


@pytest.mark.parametrize("classes", [2, 10, 1000])
@pytest.mark.parametrize("temperature", [0.5, 2.0, 8.0])
def test_weighted_two_teacher_target_matches_float64_reference(classes, temperature):
    g = torch.Generator().manual_seed(classes)
    a = torch.randn(6, classes, generator=g, dtype=torch.float64) * 5
    b = torch.randn(6, classes, generator=g, dtype=torch.float64) * 5
    student = torch.randn(6, classes, generator=g, dtype=torch.float64) * 5
    weights = [0.7, 0.3]
    target = weights[0] * (a / temperature).softmax(-1) + weights[1] * (b / temperature).softmax(-1)
    combined = combine_teacher_logits([a.float(), b.float()], weights, temperature)
    torch.testing.assert_close((combined.double() / temperature).softmax(-1), target, rtol=1e-5, atol=1e-7)
    # The KL loss against the combined logits is the KL to the averaged probabilities.
    log_q = (student / temperature).log_softmax(-1)
    reference = (target * (target.log() - log_q)).sum(-1).mean() * temperature**2
    loss = kl_divergence_loss(student.float(), combined, temperature)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-4, atol=1e-5)


def test_one_teacher_combines_to_itself_and_stays_finite():
    logits = torch.tensor([[0.0, 200.0, -300.0], [1.0, 2.0, 3.0]])
    combined = combine_teacher_logits([logits], [1.0], 2.0)
    assert torch.isfinite(combined).all()
    torch.testing.assert_close((combined / 2).log_softmax(-1), (logits / 2).log_softmax(-1))
    # A zero-weight teacher does not count.
    other = torch.randn(2, 3)
    torch.testing.assert_close(combine_teacher_logits([logits, other], [1.0, 0.0], 2.0), combined)


def test_teacher_weights_are_parsed_and_checked():
    assert parse_teacher_weights("1,3") == [0.25, 0.75]
    assert parse_teacher_weights(None, 4) == [0.25] * 4
    assert parse_teacher_weights([2, 2], 2) == [0.5, 0.5]
    for bad in ["a,b", "-1,2", "0,0", "nan,1"]:
        with pytest.raises(ValueError, match="teacher_weights"):
            parse_teacher_weights(bad)
    with pytest.raises(ValueError, match="one weight per teacher"):
        parse_teacher_weights("1,2,3", 2)


def test_named_teachers():
    a, b = tiny_bert(1), tiny_bert(2)
    assert list(named_teachers({"big": a, "small": b})) == ["big", "small"]
    assert list(named_teachers(["x/ckpt", "y/ckpt"])) == ["x/ckpt", "y/ckpt"]
    assert list(named_teachers([a, b])) == ["teacher_0", "teacher_1"]  # same config name: numbered
    with pytest.raises(ValueError, match="at least one teacher"):
        named_teachers([])


# ---- in the trainer ----

import copy  # noqa: E402

from peft import LoraConfig, get_peft_model  # noqa: E402

from hf_distill import precompute_teacher_logits  # noqa: E402
from hf_distill.teachers.ensemble import PeftBaseTeacher, TeacherEnsemble  # noqa: E402


def loss_and_grads(trainer, data):
    """The training loss of the first 8 rows and the gradients it gives the trainable parameters."""
    batch = on_device(trainer, trainer.data_collator([data[i] for i in range(8)]))
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.loss_log.pop("train")
    return loss.detach(), grads


def assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_one_teacher_in_a_list_equals_the_single_teacher(tmp_path, data):
    teacher = varied_bert(seed=1)
    single = loss_and_grads(trainer_for(tmp_path, varied_bert(seed=2), data, teacher, alpha=0.2), data)
    listed = trainer_for(tmp_path, varied_bert(seed=2), data, [teacher], alpha=0.2)
    assert isinstance(listed.teacher_model, TeacherEnsemble)
    assert_same(loss_and_grads(listed, data), single)
    named = trainer_for(tmp_path, varied_bert(seed=2), data, {"big": teacher}, alpha=0.2, teacher_weights="3")
    assert_same(loss_and_grads(named, data), single)


def test_weighted_two_teachers_match_float64_reference_in_batch_and_precomputed(tmp_path):
    data = tiny_text_dataset(16, ragged=False).remove_columns("text")
    a, b = varied_bert(seed=1), varied_bert(seed=3)
    b_reordered = permuted_teacher(b, [2, 0, 1])  # the same function, classes stored in another order
    args = dict(alpha=0.0, temperature=3.0, teacher_weights="0.7,0.3")
    in_batch = trainer_for(tmp_path, varied_bert(seed=2), data, [a, b_reordered], **args)
    loss, _ = loss_and_grads(in_batch, data)

    batch = data[:8]
    ids = torch.tensor(batch["input_ids"])
    with torch.no_grad():
        za, zb = (m.double()(input_ids=ids).logits for m in (a, b))
        zs = varied_bert(seed=2).double()(input_ids=ids).logits
    target = 0.7 * (za / 3).softmax(-1) + 0.3 * (zb / 3).softmax(-1)
    reference = (target * (target.log() - (zs / 3).log_softmax(-1))).sum(-1).mean() * 9
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)

    stored = precompute_teacher_logits(a.float(), data, column="logits_a", batch_size=8)
    stored = precompute_teacher_logits(b_reordered, stored, column="logits_b", batch_size=8)
    columns = trainer_for(tmp_path, varied_bert(seed=2), stored, teacher_logits_columns="logits_a,logits_b", **args)
    torch.testing.assert_close(loss_and_grads(columns, stored)[0], loss, rtol=1e-5, atol=1e-6)


def test_several_teachers_refuse_bad_settings(tmp_path, data):
    a, b = tiny_bert(1), tiny_bert(3)
    with pytest.raises(ValueError, match="2 values for 3 teachers"):
        trainer_for(tmp_path, tiny_bert(2), data, [a, b, tiny_bert(4)], teacher_weights="1,2")
    with pytest.raises(ValueError, match="compares raw logits"):
        trainer_for(tmp_path, tiny_bert(2), data, [a, b], distillation_loss="mse")
    with pytest.raises(ValueError, match="teacher_model is a single one"):
        trainer_for(tmp_path, tiny_bert(2), data, a, teacher_weights="1,2")
    with pytest.raises(ValueError, match="one teacher's layers"):
        trainer_for(tmp_path, tiny_bert(2), data, [a, b], hidden_state_loss="mse")
    stored = precompute_teacher_logits(a, data, column="logits_a", batch_size=8)
    with pytest.raises(ValueError, match=r"has the teacher logits columns \['logits_a'\] but not \['logits_b'\]"):
        trainer_for(tmp_path, tiny_bert(2), stored, teacher_logits_columns="logits_a,logits_b")
    with pytest.raises(ValueError, match="there is one teacher \\(logits column 'logits_a'\\)"):
        trainer_for(tmp_path, tiny_bert(2), stored, teacher_logits_column="logits_a", teacher_weights="1,2")
    with pytest.raises(
        ValueError,
        match=r"different vocabularies: 'teacher_0' \(32\), 'teacher_1' \(48\).*"
        r"--teacher_logits_columns",
    ):
        trainer_for(tmp_path, tiny_bert(2), data, [a, tiny_bert(3, vocab_size=48)])
    # control: the same single column without weights is accepted
    assert trainer_for(tmp_path, tiny_bert(2), stored, teacher_logits_column="logits_a").plan.column_weights is None


def lora_student(base):
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=4,
        lora_alpha=8,
        target_modules=["query", "value"],
        lora_dropout=0.0,
        init_lora_weights=False,  # random B: the adapted student differs from its base
    )
    student = get_peft_model(base, config)
    with torch.no_grad():  # the trainable head copy differs from the base's head too
        for name, param in student.named_parameters():
            if "modules_to_save" in name:
                param.add_(0.5 * torch.randn_like(param))
    return student


def test_self_distillation_from_the_peft_base_equals_a_separate_copy(tmp_path, data):
    base = varied_bert(seed=1)
    copy_of_base = copy.deepcopy(base)
    torch.manual_seed(0)
    student = lora_student(base)
    torch.manual_seed(0)
    twin = lora_student(copy.deepcopy(copy_of_base))
    self_trainer = trainer_for(tmp_path, student, data, alpha=0.3, self_distillation=True)
    assert isinstance(self_trainer.teacher_model, PeftBaseTeacher)
    assert list(self_trainer.teacher_model.parameters()) == []  # no second copy of the weights
    separate = trainer_for(tmp_path, twin, data, copy_of_base, alpha=0.3)
    self_result, separate_result = loss_and_grads(self_trainer, data), loss_and_grads(separate, data)
    assert self_result[0] > 0
    assert_same(self_result, separate_result)
    assert student.training  # the teacher pass put the student back in training mode
    self_trainer.train()  # and a real run works
    assert self_trainer.state.log_history[0]["loss_kd"] > 0


def test_self_distillation_from_a_checkpoint(tmp_path, data):
    earlier = varied_bert(seed=1)
    earlier.save_pretrained(tmp_path / "checkpoint")
    trainer = trainer_for(tmp_path, varied_bert(seed=2), data, str(tmp_path / "checkpoint"), self_distillation=True)
    trainer.train()
    with pytest.raises(ValueError, match="student's architecture.*hidden_size"):
        trainer_for(
            tmp_path, varied_bert(seed=2, hidden=8), data, str(tmp_path / "checkpoint"), self_distillation=True
        )
    with pytest.raises(TypeError, match="needs a PEFT student"):
        trainer_for(tmp_path, varied_bert(seed=2), data, self_distillation=True)


def test_stored_columns_guard_the_training_batches_of_unchecked_columns_only():
    seen = []
    source = StoredColumns(
        ["a", "b"], {}, 3, weights=[0.5, 0.5], on_logits=lambda values, stored: seen.append(values), checked={"a"}
    )
    batch = {"a": torch.zeros(2, 3), "b": torch.ones(2, 3)}
    source(batch, 2.0, training=True)
    source(batch, 2.0, training=False)
    assert [values.sum().item() for values in seen] == [6.0]  # column "b", in training only
