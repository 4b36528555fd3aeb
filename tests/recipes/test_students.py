import pytest
import torch
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from hf_distill.text.students import create_student, spread_layers, student_from_config, student_from_teacher
from tests.conftest import LABELS, tiny_bert

SMALL = dict(
    vocab_size=40,
    hidden_size=16,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=40,
    num_labels=3,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def test_spread_layers_reproduces_distilbert_choice():
    assert spread_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert spread_layers(6, 3) == [0, 3, 5]
    assert spread_layers(4, 1) == [3]
    with pytest.raises(ValueError, match="1 to 4 layers"):
        spread_layers(4, 5)


def test_copied_layers_give_identical_outputs_layer_by_layer():
    teacher = tiny_bert(seed=3, layers=6)
    layers = [0, 2, 5]
    student = student_from_teacher(teacher, layers=layers).eval()
    assert student.config.num_hidden_layers == 3 and student.config.id2label == teacher.config.id2label
    ids = torch.randint(5, 32, (2, 9))
    with torch.no_grad():
        t_states = teacher(input_ids=ids, output_hidden_states=True).hidden_states
        s_states = student(input_ids=ids, output_hidden_states=True).hidden_states
        torch.testing.assert_close(s_states[0], t_states[0])  # embeddings
        for i, source in enumerate(layers):
            # Feed each student layer the input its teacher layer saw (no padding, so no mask): outputs must match.
            t_out = teacher.bert.encoder.layer[source](t_states[source])
            s_out = student.bert.encoder.layer[i](t_states[source])
            t_out = t_out[0] if isinstance(t_out, tuple) else t_out
            s_out = s_out[0] if isinstance(s_out, tuple) else s_out
            torch.testing.assert_close(s_out, t_out)
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    torch.testing.assert_close(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)


def test_full_depth_copy_is_the_teacher():
    teacher = tiny_bert(seed=3, layers=2)
    student = student_from_teacher(teacher, layers=[0, 1]).eval()
    ids = torch.randint(5, 32, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(student(input_ids=ids).logits, teacher(input_ids=ids).logits)


@pytest.mark.parametrize(
    "config, model_class",
    [
        (RobertaConfig(**SMALL, pad_token_id=1), RobertaForSequenceClassification),
        (ElectraConfig(**SMALL, embedding_size=16), ElectraForSequenceClassification),
        (MPNetConfig(**SMALL), MPNetForSequenceClassification),
        (
            DistilBertConfig(vocab_size=40, dim=16, n_layers=4, n_heads=2, hidden_dim=32, num_labels=3),
            DistilBertForSequenceClassification,
        ),
    ],
)
def test_bert_family_students_keep_the_copied_weights(config, model_class):
    torch.manual_seed(0)
    teacher = model_class(config).eval()
    student = student_from_teacher(teacher, num_layers=2)
    assert student.config.num_hidden_layers == 2
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    last = [k for k in student_state if ".layer.1." in k]
    assert last and all(
        torch.equal(student_state[k], teacher_state[k.replace(".layer.1.", ".layer.3.")]) for k in last
    )
    ids = torch.randint(3, 40, (1, 6))
    assert student(input_ids=ids).logits.shape == (1, 3)


def test_unsupported_layout_names_the_architecture():
    albert = AlbertForSequenceClassification(AlbertConfig(**{**SMALL, "embedding_size": 8}))
    with pytest.raises(ValueError, match=r"AlbertForSequenceClassification \(albert\) has another layout"):
        student_from_teacher(albert, num_layers=2)


def test_layer_indices_out_of_range_are_refused():
    with pytest.raises(ValueError, match="must index the teacher's 2 layers"):
        student_from_teacher(tiny_bert(layers=2), layers=[0, 2])


def test_random_student_from_config_with_overrides():
    teacher = tiny_bert(layers=4, hidden=16)
    student = student_from_config(teacher.config, num_layers=1, hidden_size=8, num_attention_heads=2, seed=0)
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.intermediate_size) == (
        1,
        8,
        32,
    )
    assert student.config.id2label == teacher.config.id2label
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        student_from_config(teacher.config, hidden_size=10, num_attention_heads=3)


def test_create_student_rejects_unknown_init():
    with pytest.raises(ValueError, match="student_init must be one of"):
        create_student("distil", tiny_bert())


def test_pretrained_student_truncated_to_its_own_layers(tmp_path):
    base = tiny_bert(seed=4, layers=4, labels=["a", "b"])
    base.save_pretrained(tmp_path)
    teacher = tiny_bert(seed=1)
    student = create_student("pretrained", teacher, name_or_path=str(tmp_path), num_layers=2, labels=LABELS)
    assert student.config.num_hidden_layers == 2 and student.config.num_labels == 3
    torch.testing.assert_close(
        student.bert.encoder.layer[1].output.dense.weight, base.bert.encoder.layer[3].output.dense.weight
    )
    full = create_student("pretrained", teacher, name_or_path=str(tmp_path), labels=LABELS)
    assert full.config.num_hidden_layers == 4
