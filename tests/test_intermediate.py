import math

import pytest
import torch

from hf_distill.intermediate import (
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
