"""Channel pruning of ResNet classifiers (hf_distill.vision.prune_resnet_channels) and the image recipe's
--prune_channels."""

import json

import pytest
import torch
from transformers import (
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from hf_distill.vision import image_model_from_config, prune_resnet_channels
from tests.conftest import (
    CLASSES,
    check_image_pipeline,
    image_flags,
    label_kwargs,
    load_recipe,
    tiny_resnet,
    write_image_folders,
)


def resnet(layer_type: str, seed: int = 0, **sizes) -> ResNetForImageClassification:
    """A float64 ResNet in eval mode with random BatchNorm scales, shifts and statistics (not the init's 1 and 0)."""
    torch.manual_seed(seed)
    sizes = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [2, 1], **sizes}
    model = ResNetForImageClassification(ResNetConfig(layer_type=layer_type, **sizes, **label_kwargs())).double()
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            for tensor, low, high in ((bn.weight, 0.5, 1.5), (bn.bias, -0.5, 0.5), (bn.running_mean, -0.5, 0.5)):
                tensor.data.uniform_(low, high)
            bn.running_var.data.uniform_(0.5, 2.0)
    return model.eval()


def zero_odd_channels(model: ResNetForImageClassification) -> None:
    """Zero gamma and beta of every BatchNorm's odd channels: those channels are 0 after every BatchNorm (and ReLU),
    everywhere in the network, so removing them cannot change the output."""
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.weight.data[1::2] = 0
            bn.bias.data[1::2] = 0


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
def test_removing_channels_whose_batchnorm_scale_is_zero_keeps_the_outputs(layer_type):
    """Half the channels of every stage, of the embedder and inside every block have gamma = beta = 0; pruning half
    must find exactly those (scored over each stage's residual stream) and give the same logits in float64. The
    first stage continues the embedder's stream (identity shortcut), the second has a projection."""
    sizes = {"embedding_size": 16, "hidden_sizes": [16, 32]} if layer_type == "bottleneck" else {}  # inner: out / 4
    model = resnet(layer_type, **sizes)
    zero_odd_channels(model)
    pixels = torch.randn(3, 3, 20, 20, dtype=torch.float64)
    pruned = prune_resnet_channels(model, 0.5)
    assert pruned.config.embedding_size == model.config.embedding_size // 2
    assert pruned.config.hidden_sizes == [s // 2 for s in model.config.hidden_sizes]
    assert isinstance(pruned.resnet.encoder.stages[0].layers[0].shortcut, torch.nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(pruned(pixels).logits, model(pixels).logits, rtol=0, atol=1e-10)
        assert not torch.allclose(
            prune_resnet_channels(resnet(layer_type, **sizes), 0.5)(pixels).logits, model(pixels).logits
        )


def test_pruning_nothing_is_an_exact_copy_and_leaves_the_model_alone():
    model = resnet("basic")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = prune_resnet_channels(model, 0.0)
    assert copy is not model and copy.config.hidden_sizes == [8, 16] and not copy.training
    pixels = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(copy(pixels).logits, model(pixels).logits)
    pruned = prune_resnet_channels(model, 0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert pruned.classifier[-1].weight.data_ptr() != model.classifier[-1].weight.data_ptr()


def test_a_stage_keeps_the_channels_with_the_largest_gamma_summed_over_its_batchnorms():
    """The last stage's stream is written by its block's last BatchNorm and its shortcut's: the sum ranks channels
    0-7 first, while either alone would keep channels 8-11 too. The classifier keeps the columns of channels 0-7."""
    model = resnet("basic", depths=[1, 1])
    block = model.resnet.encoder.stages[1].layers[0]
    block.layer[-1].normalization.weight.data = torch.tensor([4.0] * 4 + [0.0] * 4 + [1.0] * 4 + [0.0] * 4).double()
    block.shortcut.normalization.weight.data = torch.tensor([0.0] * 4 + [4.0] * 4 + [1.0] * 4 + [0.0] * 4).double()
    pruned = prune_resnet_channels(model, 0.5)
    assert torch.equal(pruned.classifier[-1].weight, model.classifier[-1].weight[:, :8])


def test_pruning_half_of_resnet_small_gives_resnet_tiny_and_fewer_parameters():
    small = image_model_from_config("resnet-small", CLASSES)
    pruned = prune_resnet_channels(small, 0.5)
    tiny = image_model_from_config("resnet-tiny", CLASSES)
    assert (pruned.config.embedding_size, pruned.config.hidden_sizes) == (16, [16, 32, 64])
    assert pruned.num_parameters() == tiny.num_parameters() < small.num_parameters() / 3
    assert prune_resnet_channels(small, 0.99).config.hidden_sizes == [1, 1, 1]  # at least one channel a stage


def test_the_pruned_model_saves_reloads_with_the_auto_class_and_runs_in_a_pipeline(tmp_path):
    from hf_distill.vision import default_image_processor

    pruned = prune_resnet_channels(resnet("basic").float(), 0.5)
    pruned.save_pretrained(tmp_path)
    default_image_processor((16, 16)).save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(reloaded(pixels).logits, pruned(pixels).logits)
    check_image_pipeline(str(tmp_path), CLASSES)


def test_models_pruning_cannot_describe_are_refused():
    with pytest.raises(ValueError, match="ResNetForImageClassification.*--prune_heads"):
        config = ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
        prune_resnet_channels(ViTForImageClassification(config), 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        prune_resnet_channels(tiny_resnet(), 1.0)
    # embedding 3 and stage width 4 both round to 2: the stage's shortcut projection would become an identity
    odd = ResNetForImageClassification(
        ResNetConfig(embedding_size=3, hidden_sizes=[4], depths=[1], layer_type="basic")
    )
    with pytest.raises(ValueError, match="shortcut projection would vanish; choose another share"):
        prune_resnet_channels(odd, 0.5)


def test_recipe_distils_the_pruned_teacher_and_the_student_starts_from_its_weights(tmp_path):
    """--prune_channels 0.5 with no student: the student is the teacher pruned (learning rate 0, so its saved
    weights are the pruned teacher's; BatchNorm statistics follow the data), distilled from the teacher in the
    loop; parameters before and after are reported, and the student runs in a pipeline."""
    write_image_folders(tmp_path, CLASSES)
    teacher = tiny_resnet()
    teacher.save_pretrained(tmp_path / "teacher")
    out = tmp_path / "student"
    flags = ["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val")]
    flags += ["--prune_channels", "0.5", "--learning_rate", "0", "--alpha", "0.5"]
    metrics = load_recipe("image_classification").main(image_flags(str(tmp_path / "teacher"), out, *flags))
    expected = prune_resnet_channels(teacher, 0.5)
    assert metrics["parameters_before"] == teacher.num_parameters()
    assert metrics["parameters_after"] == expected.num_parameters() < teacher.num_parameters()
    assert metrics["train_loss"] > 0 and "eval_teacher_accuracy" in metrics
    assert json.loads((out / "pruning_results.json").read_text())["parameters_after"] == expected.num_parameters()
    student = AutoModelForImageClassification.from_pretrained(out)
    assert student.config.hidden_sizes == [4, 8] and student.config.embedding_size == 4
    for name, weight in expected.named_parameters():
        torch.testing.assert_close(student.get_parameter(name), weight, msg=name)
    check_image_pipeline(str(out), CLASSES)
    with pytest.raises(ValueError, match="--prune_channels prunes the teacher"):
        load_recipe("image_classification").main(
            image_flags(str(tmp_path / "teacher"), tmp_path / "x", *flags, "--student_model_type", "resnet-tiny")
        )
