"""recipes/configs/*.yaml are valid `accelerate launch` configs that give the intended plugins."""

import os
from pathlib import Path
from unittest import mock

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin, prepare_multi_gpu_env

CONFIGS = Path(__file__).parents[2] / "recipes" / "configs"


def launch_args(name: str):
    parsed = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "script.py"])
    args, defaults, _ = _validate_launch_command(parsed)
    return args, defaults


@pytest.mark.parametrize("name, machines, processes", [("ddp", 1, 8), ("multi_node_ddp", 2, 16)])
def test_ddp_configs(name, machines, processes):
    args, _ = launch_args(name)
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    assert (args.num_machines, args.num_processes) == (machines, processes)


def test_fsdp_config_gives_an_fsdp2_plugin_that_wraps_transformer_layers():
    args, _ = launch_args("fsdp")
    assert args.use_fsdp
    with mock.patch.dict(os.environ, prepare_multi_gpu_env(args)):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"


def test_deepspeed_config_gives_a_zero3_plugin():
    args, defaults = launch_args("deepspeed_zero3")
    assert args.use_deepspeed and defaults.mixed_precision == "bf16"
    plugin = DeepSpeedPlugin(**defaults.deepspeed_config)
    assert plugin.zero_stage == 3 and plugin.deepspeed_config["zero_optimization"]["stage"] == 3
