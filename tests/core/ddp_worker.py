"""Run by `torchrun --nproc_per_node 2` from test_distributed.py: the delay under DDP on CPU."""

import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_qkdelay import QKDelayArguments, attach_qk_delay  # noqa: E402
from hf_qkdelay.tokenization import train_bpe_tokenizer  # noqa: E402
from tests.conftest import read_slice  # noqa: E402
from tests.core.helpers import make_trainer, tiny_gpt2, token_blocks  # noqa: E402


def main(output_dir: str) -> None:
    text = read_slice("tinyshakespeare.txt", 60_000)
    tokenizer = train_bpe_tokenizer(text.splitlines(), vocab_size=512)
    dataset = token_blocks(tokenizer, text, 32)
    model = tiny_gpt2()
    initial = model.transformer.h[3].attn.c_attn.weight.detach().clone()
    width = model.config.n_embd
    frozen_during_window = []

    class WatchQK(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                weight = model.transformer.h[3].attn.c_attn.weight.detach()
                frozen_during_window.append(
                    torch.equal(initial[:, : 2 * width], weight[:, : 2 * width])
                )

    trainer = make_trainer(model, dataset, output_dir, max_steps=3, per_device_train_batch_size=2)
    trainer.add_callback(WatchQK())
    attach_qk_delay(trainer, QKDelayArguments(qk_delay_factor=0.0, qk_delay_steps=2))
    trainer.train()
    final = model.transformer.h[3].attn.c_attn.weight.detach()
    rank = int(os.environ["RANK"])
    record = {
        "qk_frozen_during_window": frozen_during_window == [True],
        "world_size": trainer.args.world_size,
        "multipliers": [
            e["qk_delay/multiplier"]
            for e in trainer.state.log_history
            if "qk_delay/multiplier" in e
        ],
        "qk_moved": not torch.equal(initial[:, : 2 * width], final[:, : 2 * width]),
        "v_moved": not torch.equal(initial[:, 2 * width :], final[:, 2 * width :]),
        "checksum": float(final.double().sum()),
    }
    Path(output_dir, f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1])
