"""LoRA students from the recipes, with TRL's flag names (`trl.ModelConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedModel


@dataclass
class PeftArguments:
    """``--use_peft`` trains a LoRA adapter (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models")
    on the student instead of all its weights; the new classification head is trained and saved in full."""

    use_peft: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of the whole student."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha/r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt, e.g. query value (default: PEFT's choice for the architecture)."},
    )

    def apply(self, model: PreTrainedModel, task_type: str = "SEQ_CLS") -> PreTrainedModel:
        """``model`` wrapped in a LoRA `PeftModel` when ``--use_peft``, else unchanged."""
        if not self.use_peft:
            return model
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            task_type=task_type,
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
        )
        return get_peft_model(model, config)
