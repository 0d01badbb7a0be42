"""The two model families of the component ablations: `qkd_gpt2` and `qkd_llama`.

Both are transformers' own GPT-2 and LLaMA with four switches (`gated_ffn` with
`ffn_activation`, `norm_type`, `use_bias`, `position_embedding`); the defaults are the stock
models, whose checkpoints transformers' `GPT2LMHeadModel` / `LlamaForCausalLM` load.

Importing this package registers both with `AutoConfig`, `AutoModel` and
`AutoModelForCausalLM`, and marks the classes so that `save_pretrained` writes `auto_map` and
copies the code: a saved folder then loads anywhere with `trust_remote_code=True`.

    from hf_qkdelay.models import preset_config
    config = preset_config("qkd_llama", "tiny", gated_ffn=False, norm_type="layernorm")
    model = AutoModelForCausalLM.from_config(config)
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_qkd_gpt2 import QKDGPT2Config
from .configuration_qkd_llama import QKDLlamaConfig
from .modeling_qkd_gpt2 import QKDGPT2LMHeadModel, QKDGPT2Model
from .modeling_qkd_llama import QKDLlamaForCausalLM, QKDLlamaModel
from .presets import MODEL_SIZES, MODEL_TYPES, preset_config
from .switches import NORM_TYPES, POSITION_EMBEDDINGS


def _register() -> None:
    for config_class, base_class, causal_lm_class in (
        (QKDGPT2Config, QKDGPT2Model, QKDGPT2LMHeadModel),
        (QKDLlamaConfig, QKDLlamaModel, QKDLlamaForCausalLM),
    ):
        # In this process: the Auto classes resolve `model_type` to our classes.
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, base_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, causal_lm_class, exist_ok=True)

        # In saved folders: `auto_map` and a copy of the code, for `trust_remote_code` loading.
        config_class.register_for_auto_class("AutoConfig")
        base_class.register_for_auto_class("AutoModel")
        causal_lm_class.register_for_auto_class("AutoModelForCausalLM")


_register()

__all__ = [
    "MODEL_SIZES",
    "MODEL_TYPES",
    "NORM_TYPES",
    "POSITION_EMBEDDINGS",
    "QKDGPT2Config",
    "QKDGPT2LMHeadModel",
    "QKDGPT2Model",
    "QKDLlamaConfig",
    "QKDLlamaForCausalLM",
    "QKDLlamaModel",
    "preset_config",
]
