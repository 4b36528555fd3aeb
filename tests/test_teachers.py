import pytest
import torch

from hf_distill.losses import kl_divergence_loss
from hf_distill.teachers import combine_teacher_logits, named_teachers, parse_teacher_weights
from tests.conftest import tiny_bert


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
