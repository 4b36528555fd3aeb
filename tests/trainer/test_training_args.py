import json

import pytest
import torch
from transformers import HfArgumentParser, TrainingArguments

from hf_distill import DistillationTrainingArguments
from hf_distill.workflow.arguments import parse_arguments


def test_cli_flags_parse_and_serialise(tmp_path):
    parser = HfArgumentParser(DistillationTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--alpha",
            "0.2",
            "--temperature",
            "4",
            "--distillation_loss",
            "mse",
            "--teacher_logits_column",
            "t_logits",
            "--learning_rate",
            "3e-5",
            "--report_to",
            "none",
        ]
    )
    assert (args.alpha, args.temperature, args.distillation_loss, args.teacher_logits_column) == (
        0.2,
        4.0,
        "mse",
        "t_logits",
    )
    assert args.learning_rate == 3e-5  # an ordinary Trainer flag still works
    as_dict = json.loads(args.to_json_string())
    assert as_dict["alpha"] == 0.2 and as_dict["temperature"] == 4.0 and as_dict["teacher_input_prefix"] == "teacher_"
    assert isinstance(args, TrainingArguments)


def test_parses_from_json_file(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path), "alpha": 0.0, "temperature": 1.5, "report_to": "none"}))
    (args,) = HfArgumentParser(DistillationTrainingArguments).parse_json_file(str(path))
    assert args.alpha == 0.0 and args.temperature == 1.5


def test_help_renders():
    assert "--temperature" in HfArgumentParser(DistillationTrainingArguments).format_help()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\].*got 1.5"),
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
        ({"temperature": 0.0}, "temperature must be finite and > 0"),
        ({"temperature": -2.0}, "temperature must be finite and > 0"),
        ({"temperature": float("inf")}, "temperature must be finite and > 0, got inf"),
        ({"temperature": float("nan")}, "temperature must be finite and > 0, got nan"),
        ({"label_names": ["target"]}, "label_names=.*reads the class labels from the `labels` key"),
        ({"label_smoothing_factor": 1.0}, r"label_smoothing_factor must be in \[0, 1\)"),
        ({"distillation_loss": "kld"}, "Unknown distillation_loss 'kld'. Known losses: dist, dkd, hard, jsd, kl, mse"),
        ({"teacher_dtype": "int8"}, "teacher_dtype must be one of"),
        ({"teacher_torch_compile": "yes"}, "teacher_torch_compile must be True or False"),
        ({"teacher_logits_column": ""}, "teacher_logits_column must be a non-empty"),
        ({"dkd_beta": -1.0}, "dkd_beta must be >= 0"),
        ({"dkd_beta": float("inf")}, "dkd_beta must be >= 0 and finite, got inf"),
        ({"dkd_alpha": float("nan")}, "dkd_alpha must be >= 0 and finite, got nan"),
        ({"dist_gamma": float("inf")}, "dist_gamma must be >= 0 and finite, got inf"),
        (
            {"hidden_state_loss": "mse", "hidden_state_weight": float("inf")},
            "hidden_state_weight must be >= 0 and finite",
        ),
        ({"attention_loss": "kl", "attention_weight": float("inf")}, "attention_weight must be >= 0 and finite"),
        ({"jsd_beta": 1.5}, r"jsd_beta must be in \[0, 1\]"),
        ({"teacher_correction": "onehot"}, "teacher_correction must be one of swap"),
        ({"alpha_schedule": "step"}, "alpha_schedule must be one of constant, linear, cosine"),
        ({"alpha_end": 0.1}, "alpha_end=0.1 has no effect with alpha_schedule='constant'"),
        ({"temperature_schedule": "linear", "temperature_end": 0.0}, "temperature_end must be finite and > 0"),
        ({"distillation_steps": 0}, "distillation_steps must be > 0"),
        ({"two_stage_steps": 5, "two_stage_epochs": 1.0}, "Set two_stage_steps or two_stage_epochs, not both"),
    ],
)
def test_bad_values_raise_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        DistillationTrainingArguments(output_dir=str(tmp_path), report_to=[], **overrides)


def test_method_flags_parse_and_summarise(tmp_path):
    parser = HfArgumentParser(DistillationTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--report_to", "none", "--distillation_loss", "dkd", "--dkd_beta", "2"]
        + ["--alpha_schedule", "cosine", "--alpha_end", "0.1", "--teacher_correction", "swap"]
        + ["--logit_standardization", "--distillation_epochs", "1", "--two_stage_steps", "100"]
    )
    assert args.method_summary() == {
        "distillation_loss": "dkd",
        "dkd_alpha": 1.0,
        "dkd_beta": 2.0,
        "alpha": 0.5,
        "alpha_schedule": "cosine to 0.1",
        "temperature": 2.0,
        "teacher_correction": "swap",
        "distillation_epochs": 1.0,
        "two_stage_steps": 100,
        "logit_standardization": True,
    }


def test_teacher_torch_compile_flag_parses_and_compiles_the_teacher_on_placement(tmp_path):
    from hf_distill import DistillationTrainer
    from tests.conftest import tiny_bert, tiny_text_dataset

    parser = HfArgumentParser(DistillationTrainingArguments)
    assert "--teacher_torch_compile" in parser.format_help()
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--teacher_torch_compile", "--use_cpu", "--report_to", "none"]
    )
    assert args.teacher_torch_compile is True
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2), args=args, teacher_model=tiny_bert(seed=1), train_dataset=tiny_text_dataset(4)
    )
    runner, input_names = trainer.source.teacher.placed()
    assert isinstance(runner, torch._dynamo.eval_frame.OptimizedModule) and runner._orig_mod is trainer.teacher_model
    assert "input_ids" in input_names


def test_string_alpha_is_refused_with_a_clear_type_error(tmp_path):
    with pytest.raises(TypeError, match="alpha must be a number, got '5e-1'"):
        DistillationTrainingArguments(output_dir=str(tmp_path), report_to=[], alpha="5e-1")


def test_yaml_numbers_written_as_strings_are_converted(tmp_path):
    """PyYAML reads ``5e-1`` as a string; the recipes' parser converts it for number fields, or names the field."""
    config = tmp_path / "config.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\nalpha: 5e-1\nlearning_rate: 3e-5\nreport_to: []\n")
    (args,) = parse_arguments(HfArgumentParser(DistillationTrainingArguments), [str(config)])
    assert args.alpha == 0.5 and args.learning_rate == 3e-5
    config.write_text(f"output_dir: {tmp_path / 'out'}\ntemperature: warm\n")
    with pytest.raises(ValueError, match="temperature must be a number"):
        parse_arguments(HfArgumentParser(DistillationTrainingArguments), [str(config)])


@pytest.mark.parametrize("metric", ["loss_kd", "eval_loss_ce", "loss"])
def test_loss_metrics_select_the_lowest_checkpoint_by_default(tmp_path, metric):
    args = DistillationTrainingArguments(output_dir=str(tmp_path), report_to=[], metric_for_best_model=metric)
    assert args.greater_is_better is False
    agreement = DistillationTrainingArguments(
        output_dir=str(tmp_path), report_to=[], metric_for_best_model="agreement"
    )
    assert agreement.greater_is_better is True


def test_large_finite_weights_are_accepted(tmp_path):
    """The control of the inf-weight refusals: large finite weights are the user's choice."""
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path),
        report_to=[],
        distillation_loss="dkd",
        dkd_beta=1e6,
        hidden_state_loss="mse",
        hidden_state_weight=1e6,
    )
    assert args.method_summary()["dkd_beta"] == 1e6 and args.method_summary()["hidden_state_weight"] == 1e6


def test_method_fields_are_fields_and_the_loss_hyperparameters_come_from_the_registry(tmp_path):
    import dataclasses

    from hf_distill.training_args import METHOD_FIELDS

    fields = {f.name for f in dataclasses.fields(DistillationTrainingArguments)}
    assert set(METHOD_FIELDS) <= fields
    args = DistillationTrainingArguments(output_dir=str(tmp_path), report_to=[], distillation_loss="jsd")
    assert args.loss_hyperparameters == {"jsd_beta": 0.5}
    assert "jsd_beta" in args.method_summary() and "dkd_beta" not in args.method_summary()
