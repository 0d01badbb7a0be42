"""hf-qkdelay: upper-layer Q/K learning-rate delay for Hugging Face Trainer pretraining.

The intervention: for the chosen (by default the upper half of the) attention layers, the
learning rate of the query and key projections is multiplied by a factor below 1 that
returns to 1 after a window of updates; every other parameter trains as usual.

    from hf_qkdelay import QKDelayArguments, attach_qk_delay
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset)
    attach_qk_delay(trainer, QKDelayArguments(qk_delay_factor=0.1, qk_delay_steps=0.2))
    trainer.train()
"""

from .arguments import QKDelayArguments
from .callback import QKDelayCallback, attach_qk_delay
from .controller import MultiplierController
from .optim import MultiplierOptimizerFactory, build_optimizer, build_param_groups
from .rules import MultiplierRule, load_rules, resolve_rules
from .schedules import MultiplierSchedule
from .selection import (
    ATTENTION_LAYOUTS,
    FusedProjection,
    ParamSlice,
    SeparateProjections,
    select_projections,
)

__version__ = "0.1.0"

__all__ = [
    "ATTENTION_LAYOUTS",
    "FusedProjection",
    "MultiplierController",
    "MultiplierOptimizerFactory",
    "MultiplierRule",
    "MultiplierSchedule",
    "ParamSlice",
    "QKDelayArguments",
    "QKDelayCallback",
    "SeparateProjections",
    "attach_qk_delay",
    "build_optimizer",
    "build_param_groups",
    "load_rules",
    "resolve_rules",
    "select_projections",
]
