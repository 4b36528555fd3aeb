"""Schedules: alpha/temperature curves in the logs, KD then CE without the teacher, two-stage training."""

import math

import pytest
import torch
from transformers import TrainerCallback, TrainerState

from hf_distill.methods.schedules import head_and_backbone, objective_schedule, scheduled_value
from tests.conftest import make_args, tiny_bert, tiny_text_dataset, trainer_for


def training_logs(trainer):
    return [log for log in trainer.state.log_history if "loss" in log]


def test_scheduled_values():
    assert scheduled_value("constant", 0.5, 0.1, 0.7) == 0.5
    assert scheduled_value("linear", 0.5, 0.1, 0.25) == pytest.approx(0.4)
    assert scheduled_value("cosine", 0.5, 0.1, 0.0) == pytest.approx(0.5)
    assert scheduled_value("cosine", 0.5, 0.1, 0.5) == pytest.approx(0.3)
    assert scheduled_value("cosine", 0.5, 0.1, 1.0) == pytest.approx(0.1)


def test_alpha_and_temperature_schedules_are_logged_at_every_step(tmp_path, data):
    trainer = trainer_for(
        tmp_path,
        tiny_bert(seed=2),
        data,
        tiny_bert(seed=1),
        max_steps=6,
        per_device_train_batch_size=4,
        alpha=0.9,
        alpha_end=0.1,
        alpha_schedule="cosine",
        temperature=8.0,
        temperature_end=2.0,
        temperature_schedule="linear",
    )
    trainer.train()
    logs = training_logs(trainer)
    assert [log["step"] for log in logs] == [1, 2, 3, 4, 5, 6]
    for log in logs:  # the values used by the step just logged, at progress (step - 1) / max_steps
        progress = (log["step"] - 1) / 6
        assert log["alpha"] == pytest.approx(0.1 + 0.8 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert log["temperature"] == pytest.approx(8.0 - 6.0 * progress)
    assert logs[0]["alpha"] == pytest.approx(0.9) and logs[-1]["temperature"] == pytest.approx(3.0)


@pytest.mark.parametrize("switch", [{"distillation_steps": 2}, {"distillation_epochs": 1}])
def test_kd_then_ce_stops_running_the_teacher(tmp_path, data, switch):
    teacher = tiny_bert(seed=1)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    # 16 examples at batch size 8: 2 steps per epoch, 5 steps = 2.5 epochs.
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), data, teacher, max_steps=5, alpha=0.5, **switch)
    trainer.train()
    assert len(calls) == 2
    logs = training_logs(trainer)
    assert [("loss_kd" in log, log["alpha"]) for log in logs] == [(True, 0.5)] * 2 + [(False, 1.0)] * 3


def test_objective_schedule_switches_at_the_epoch_boundary(tmp_path):
    args = make_args(tmp_path, distillation_epochs=1.5, alpha=0.3)
    state = TrainerState(global_step=3, max_steps=8, epoch=1.49)
    assert objective_schedule(args, state).distil and objective_schedule(args, state).alpha == 0.3
    state.epoch = 1.5
    assert objective_schedule(args, state) == (1.0, args.temperature, False)


def two_stage_trainer(tmp_path, data, max_steps: int):
    """A tiny student whose first 3 steps train the classifier head alone."""
    return trainer_for(
        tmp_path,
        tiny_bert(seed=2),
        data,
        tiny_bert(seed=1),
        max_steps=max_steps,
        two_stage_steps=3,
        weight_decay=0.1,
        learning_rate=1e-2,
        alpha=0.5,
    )


def test_two_stage_freezes_the_backbone_bit_for_bit_in_stage_1(tmp_path, data):
    trainer = two_stage_trainer(tmp_path, data, max_steps=4)
    head, backbone = head_and_backbone(trainer.model)
    before = [p.detach().clone() for p in backbone]
    head_before = [p.detach().clone() for p in head]
    seen = {}

    class AtStageEnd(TrainerCallback):  # the end of stage 1 (a run of stage 1 alone is refused)
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                seen["backbone"] = [p.detach().clone() for p in backbone]
                seen["head"] = [p.detach().clone() for p in head]
                optimizer = trainer.optimizer.state
                seen["state"] = [len(optimizer[p]) for p in backbone], [int(optimizer[p]["step"]) for p in head]

    trainer.add_callback(AtStageEnd())
    trainer.train()
    assert all(torch.equal(a, p) for a, p in zip(before, seen["backbone"], strict=True))
    assert not all(torch.equal(a, p) for a, p in zip(head_before, seen["head"], strict=True))
    assert all(p.requires_grad for p in trainer.model.parameters())  # unfrozen when training ends
    backbone_state, head_steps = seen["state"]
    assert all(n == 0 for n in backbone_state) and all(step == 3 for step in head_steps)


def test_two_stage_trains_everything_in_stage_2_with_fresh_optimizer_state(tmp_path, data):
    trainer = two_stage_trainer(tmp_path, data, max_steps=5)
    head, backbone = head_and_backbone(trainer.model)
    before = [p.detach().clone() for p in backbone]
    trainer.train()
    assert all(not torch.equal(a, p) for a, p in zip(before, backbone, strict=True) if p.numel() > 1)
    state = trainer.optimizer.state
    assert all(state[p]["step"] == 2 for p in backbone) and all(state[p]["step"] == 5 for p in head)
    assert all(math.isfinite(log["loss"]) for log in training_logs(trainer))


def test_adamw_decoupled_weight_decay_skips_parameters_without_gradient():
    """What two-stage training relies on: AdamW's weight decay only touches parameters that have a gradient."""
    frozen, trained = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([frozen, trained], lr=0.1, weight_decay=0.5)
    trained.grad = torch.ones(3)
    optimizer.step()
    assert torch.equal(frozen.detach(), torch.ones(3)) and frozen not in optimizer.state
    assert not torch.equal(trained.detach(), torch.ones(3))


def test_two_stage_needs_a_model_with_a_backbone(tmp_path, data):
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="no separate `base_model`"):
        head_and_backbone(Flat())


@pytest.mark.parametrize("name, start, end", [("alpha", 0.5, 0.1), ("temperature", 2.0, 4.0)])
def test_a_moving_schedule_needs_its_end_value(tmp_path, name, start, end):
    """A linear or cosine schedule without its end value would stay constant while the card says it moves."""
    with pytest.raises(ValueError, match=rf"{name}_schedule='cosine' moves {name} towards {name}_end, which is unset"):
        make_args(tmp_path, **{f"{name}_schedule": "cosine"})
    args = make_args(tmp_path, **{name: start, f"{name}_schedule": "cosine", f"{name}_end": end})  # control
    assert args.method_summary()[f"{name}_schedule"] == f"cosine to {end}"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"distillation_steps": 2}, "distillation_steps=2 is not below the run's 2 optimizer steps, so KD then CE"),
        ({"distillation_epochs": 1.0}, r"distillation_epochs=1.0 is not below the run's 1.0 epochs"),
        ({"two_stage_steps": 5}, "two_stage_steps=5 is not below the run's 2 optimizer steps, so two-stage"),
        ({"two_stage_epochs": 1.8, "max_steps": 3}, r"two_stage_epochs=1.8 is not below the run's 1.5 epochs"),
    ],
)
def test_switches_beyond_the_run_are_refused_before_the_first_step(tmp_path, data, overrides, message):
    trainer = trainer_for(
        tmp_path, tiny_bert(seed=2), data, tiny_bert(seed=1), **overrides
    )  # 16 rows at batch size 8: 2 steps an epoch
    with pytest.raises(ValueError, match=message):
        trainer.train()
    assert trainer.state.global_step == 0


def test_switches_inside_the_run_train(tmp_path, data):
    trainer = trainer_for(
        tmp_path, tiny_bert(seed=2), data, tiny_bert(seed=1), max_steps=3, distillation_steps=2, two_stage_steps=1
    )
    trainer.train()
    assert [("loss_kd" in log) for log in training_logs(trainer)] == [True, True, False]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alpha": 0.0, "alpha_schedule": "linear", "alpha_end": 0.5}, "alpha_schedule='linear' moves alpha from 0.0"),
        ({"alpha": 0.0, "distillation_steps": 1}, "distillation_steps switches to training on the labels alone"),
        ({"alpha": 0.3}, "alpha=0.3, which weighs a hard-label cross-entropy"),
    ],
)
def test_a_schedule_that_needs_labels_is_refused_on_unlabelled_data(tmp_path, overrides, message):
    unlabelled = tiny_text_dataset(16, labels=False).remove_columns("text")
    with pytest.raises(ValueError, match=message):
        trainer_for(tmp_path, tiny_bert(seed=2), unlabelled, tiny_bert(seed=1), **overrides)
    trainer = trainer_for(
        tmp_path, tiny_bert(seed=2), unlabelled, tiny_bert(seed=1), alpha=0.0
    )  # control: pure distillation throughout trains
    trainer.train()
    assert trainer.state.global_step == 2
