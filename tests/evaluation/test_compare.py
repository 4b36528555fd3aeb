"""`compare_models`: its numbers against a direct computation on tiny models, its outputs, and bad input."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import DatasetDict

from hf_distill import DataCollatorForDistillation
from hf_distill.evaluation.compare import ComparisonReport, compare_models
from hf_distill.evaluation.metrics import accuracy, expected_calibration_error, macro_f1
from hf_distill.evaluation.plots import bootstrap_interval
from tests.conftest import permuted_teacher, tiny_text_dataset, varied_bert

FAST = dict(latency_runs=4, throughput_batch_size=8, throughput_runs=2, warmup_runs=1, num_threads=1)


@pytest.fixture(scope="module")
def models():
    return varied_bert(seed=1, layers=3, hidden=32), varied_bert(seed=3), varied_bert(seed=4, layers=1)


def direct_logits(model, dataset, prefix=""):
    batch = DataCollatorForDistillation()([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits = model(input_ids=batch[prefix + "input_ids"], attention_mask=batch[prefix + "attention_mask"]).logits
    return logits.double(), batch["labels"].numpy()


def test_report_agrees_with_a_direct_computation(models, tmp_path):
    teacher, student, other = models
    dataset = tiny_text_dataset(24, seed=5)
    report = compare_models(teacher, {"distilled": student, "small": other}, dataset, batch_size=5, **FAST)

    assert [r.name for r in report.results] == ["teacher", "distilled", "small"]
    teacher_logits, labels = direct_logits(teacher, dataset)
    for row, model in zip(report.results, models, strict=True):
        logits, _ = direct_logits(model, dataset)
        predictions = logits.argmax(-1).numpy()
        assert row.accuracy == pytest.approx(accuracy(predictions, labels))
        assert row.macro_f1 == pytest.approx(macro_f1(predictions, labels))
        assert row.ece == pytest.approx(expected_calibration_error(logits.numpy(), labels), abs=1e-6)
        assert row.num_parameters == sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp_path / row.name)
        assert row.size_bytes == os.path.getsize(tmp_path / row.name / "model.safetensors")
        assert row.compression == pytest.approx(report.teacher.num_parameters / row.num_parameters)
        assert row.speedup == pytest.approx(report.teacher.latency_ms_median / row.latency_ms_median)
        assert 0 < row.latency_ms_median <= row.latency_ms_p95
        assert row.throughput > 0
        if row.role == "student":
            assert row.agreement == pytest.approx((predictions == teacher_logits.argmax(-1).numpy()).mean())
            kl = F.kl_div(
                logits.log_softmax(-1), teacher_logits.log_softmax(-1), log_target=True, reduction="batchmean"
            )
            assert row.mean_kl == pytest.approx(kl.item(), rel=1e-4)
    assert report.teacher.agreement is None and report.teacher.speedup == 1.0
    assert {r.accuracy for r in report.results} != {report.teacher.accuracy}  # the models really differ
    assert report.settings["num_threads"] == 1 and report.settings["num_examples"] == 24


def test_label_order_and_teacher_inputs(models):
    teacher, student, _ = models
    dataset = tiny_text_dataset(16, seed=6)
    shifted = [[2, *[(t + 7) % 27 + 5 for t in ids[1:-1]], 3] for ids in dataset["input_ids"]]
    dataset = dataset.add_column("teacher_input_ids", shifted)
    dataset = dataset.add_column("teacher_attention_mask", dataset["attention_mask"])
    reordered = permuted_teacher(student, [2, 0, 1])  # same function, labels stored in another order
    report = compare_models(teacher, {"student": student, "reordered": reordered}, dataset, **FAST)

    plain, reordered_row = report.students
    for field in ("accuracy", "macro_f1", "agreement", "mean_kl", "ece"):
        assert getattr(reordered_row, field) == pytest.approx(getattr(plain, field), abs=1e-6), field
    teacher_logits, labels = direct_logits(teacher, dataset, prefix="teacher_")
    assert report.teacher.accuracy == pytest.approx(accuracy(teacher_logits.argmax(-1).numpy(), labels))
    on_student_inputs, _ = direct_logits(teacher, dataset)
    assert not torch.equal(on_student_inputs.argmax(-1), teacher_logits.argmax(-1))  # the prefix mattered


def test_outputs_json_markdown_plot(models, tmp_path):
    teacher, student, _ = models
    report = compare_models(teacher, student, tiny_text_dataset(8, seed=7), **FAST)
    assert report.students[0].name == "student"
    back = ComparisonReport.from_json(report.to_json(tmp_path / "report.json"))
    assert back == report
    assert ComparisonReport.from_json(report.to_json()) == report
    table = report.to_markdown()
    assert table.count("\n| ") == 2 and "torch.set_num_threads(1)" in table and "Speed-up" in table
    pytest.importorskip("matplotlib")
    path = report.plot(tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unlabelled_set_reports_agreement_only(models):
    teacher, student, _ = models
    report = compare_models(teacher, {"s": student}, tiny_text_dataset(8, labels=False), **FAST)
    assert report.teacher.accuracy is None and report.students[0].ece is None
    assert 0 <= report.students[0].agreement <= 1
    assert report.settings["labelled"] is False


def test_threads_restored_and_bad_input(models):
    teacher, student, _ = models
    threads = torch.get_num_threads()
    dataset = tiny_text_dataset(8)
    compare_models(teacher, student, dataset, **{**FAST, "num_threads": max(1, threads - 1)})
    assert torch.get_num_threads() == threads
    with pytest.raises(TypeError, match="pick a split"):
        compare_models(teacher, student, DatasetDict({"test": dataset}))
    with pytest.raises(ValueError, match="empty"):
        compare_models(teacher, student, dataset.select([]))
    with pytest.raises(ValueError, match="Tokenize"):
        compare_models(teacher, student, dataset.select_columns(["text", "label"]))
    with pytest.raises(ValueError, match="named 'teacher'"):
        compare_models(teacher, {"teacher": student}, dataset)
    with pytest.raises(ValueError, match="latency_runs"):
        compare_models(teacher, student, dataset, latency_runs=0)
    assert np.isfinite(compare_models(teacher, student, dataset, **FAST).students[0].mean_kl)


def test_image_classifiers():
    from datasets import Dataset
    from transformers import ViTConfig, ViTForImageClassification

    def vit(seed, layers):
        torch.manual_seed(seed)
        config = ViTConfig(
            image_size=16, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=layers,
            num_attention_heads=2, intermediate_size=32, num_labels=3, initializer_range=1.0,
        )  # fmt: skip
        return ViTForImageClassification(config).eval()

    pixels = np.random.default_rng(0).normal(size=(12, 1, 16, 16)).astype("float32")
    dataset = Dataset.from_dict({"pixel_values": pixels.tolist(), "label": (np.arange(12) % 3).tolist()})
    teacher, student = vit(0, 3), vit(1, 1)
    report = compare_models(teacher, {"small": student}, dataset, **FAST)
    with torch.no_grad():
        expected = accuracy(
            teacher(pixel_values=torch.from_numpy(pixels)).logits.argmax(-1).numpy(), np.arange(12) % 3
        )
    assert report.teacher.accuracy == pytest.approx(expected)
    assert report.students[0].compression == pytest.approx(
        sum(p.numel() for p in teacher.parameters()) / sum(p.numel() for p in student.parameters())
    )


def test_peft_student_is_measured_merged_on_a_copy(models):
    peft = pytest.importorskip("peft")
    teacher, student, _ = models
    lora = peft.get_peft_model(
        varied_bert(seed=3),
        peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"], init_lora_weights=False),
    )
    dataset = tiny_text_dataset(8, seed=8)
    report = compare_models(teacher, {"lora": lora}, dataset, **FAST)
    assert any("lora_A" in name for name, _ in lora.named_parameters())  # the caller's model is not merged
    merged = lora.merge_and_unload()
    logits, labels = direct_logits(merged, dataset)
    assert report.students[0].accuracy == pytest.approx(accuracy(logits.argmax(-1).numpy(), labels))
    assert report.students[0].num_parameters == sum(p.numel() for p in merged.parameters())


def test_accuracy_and_agreement_come_with_bootstrap_intervals(models):
    teacher, student, _ = models
    report = compare_models(teacher, {"s": student}, tiny_text_dataset(40, seed=2), bootstrap_resamples=500, **FAST)
    for row in report.results:
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
    row = report.students[0]
    assert row.agreement_low <= row.agreement <= row.agreement_high
    assert (
        "95% CI" in report.to_markdown() and f"{row.accuracy_low:.3f}-{row.accuracy_high:.3f}" in report.to_markdown()
    )


def test_bootstrap_interval_matches_the_binomial_standard_error():
    hits = np.random.default_rng(0).random(2000) < 0.8
    low, high = bootstrap_interval(hits, n_resamples=2000)
    se = np.sqrt(hits.mean() * (1 - hits.mean()) / len(hits))
    assert low < hits.mean() < high and (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_interval(hits, seed=3) == bootstrap_interval(hits, seed=3)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval(np.array([]))


def test_onnxruntime_rows_match_pytorch_and_int8_is_smaller(models, tmp_path):
    pytest.importorskip("onnxruntime")
    teacher, student, _ = models
    dataset = tiny_text_dataset(24, seed=5)
    report = compare_models(
        teacher, {"distilled": student}, dataset, backends=("pytorch", "onnxruntime"), quantize="dynamic",
        onnx_dir=tmp_path, **FAST,
    )  # fmt: skip
    rows = {r.name: r for r in report.results}
    assert list(rows) == ["teacher", "distilled", "distilled (onnxruntime)", "distilled (onnxruntime int8)"]
    torch_row, onnx_row, int8_row = (
        rows["distilled"],
        rows["distilled (onnxruntime)"],
        rows["distilled (onnxruntime int8)"],
    )
    assert (onnx_row.backend, int8_row.backend) == ("onnxruntime", "onnxruntime-int8")
    # fp32 ONNX Runtime computes the same function: same accuracy, agreement and KL (to float rounding).
    assert onnx_row.accuracy == torch_row.accuracy and onnx_row.agreement == torch_row.agreement
    assert onnx_row.mean_kl == pytest.approx(torch_row.mean_kl, rel=1e-3, abs=1e-6)
    assert abs(int8_row.agreement - torch_row.agreement) <= 0.25  # int8 may flip a few of 24 near-ties
    exported = sum(p.stat().st_size for p in tmp_path.glob("distilled.onnx*"))  # the graph and its weights file
    assert int8_row.size_bytes < onnx_row.size_bytes == exported
    assert onnx_row.num_parameters == torch_row.num_parameters and int8_row.latency_ms_median > 0
    assert "onnxruntime.quantization.quantize_dynamic" in report.to_markdown()
    assert report.settings["backends"] == ["pytorch", "onnxruntime"] and report.settings["quantize"] == "dynamic"
    pytest.importorskip("matplotlib")
    assert report.plot(tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_backends_are_refused(models):
    teacher, student, _ = models
    dataset = tiny_text_dataset(8)
    with pytest.raises(ValueError, match="backends must be"):
        compare_models(teacher, student, dataset, backends=("tensorrt",))
    with pytest.raises(ValueError, match="add 'onnxruntime'"):
        compare_models(teacher, student, dataset, quantize="dynamic")
    with pytest.raises(ValueError, match="quantize must be"):
        compare_models(teacher, student, dataset, backends=("onnxruntime",), quantize="static")


def test_a_head_pruned_student_given_as_a_path_is_compared(models, tmp_path):
    from hf_distill.methods.pruning import head_importance, prune_model

    teacher = models[0]
    dataset = tiny_text_dataset(16, seed=5)
    batch = DataCollatorForDistillation()([{k: v for k, v in dataset[i].items() if k != "text"} for i in range(8)])
    pruned = prune_model(teacher, head_importance(teacher, [batch]), heads=0.5)
    pruned.save_pretrained(tmp_path / "pruned")
    report = compare_models(teacher, {"pruned": str(tmp_path / "pruned")}, dataset, batch_size=8, **FAST)
    row = report.results[1]
    assert row.num_parameters == pruned.num_parameters() < teacher.num_parameters()
    logits, labels = direct_logits(pruned, dataset)
    assert row.accuracy == pytest.approx(accuracy(logits.argmax(-1).numpy(), labels))


@pytest.mark.parametrize("percent, warned", [(100.0, True), (0.0, False)])
def test_warns_when_other_work_keeps_the_cpus_busy_now(models, monkeypatch, caplog, percent, warned):
    """The warning reads the CPU use of the moment, not the load average (which still counts jobs that just ended)."""
    teacher, student, _ = models
    monkeypatch.setattr("hf_distill.evaluation.compare.psutil.cpu_percent", lambda interval: percent)
    with caplog.at_level("WARNING"):
        compare_models(teacher, student, tiny_text_dataset(8), **FAST)
    assert ("CPUs are busy" in caplog.text) is warned
