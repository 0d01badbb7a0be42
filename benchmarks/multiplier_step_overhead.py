"""Cost of the Q/K delay per optimizer update: time of `optimizer.step()` and extra memory.

The controller touches only what it governs: for separate Q/K projections it rescales one
learning rate per group (no tensor work); for GPT-2's fused `c_attn` it copies the governed
Q/K columns aside before the step and blends them after, so its work and its buffers are
proportional to the governed slices, never to the model.

    python benchmarks/multiplier_step_overhead.py --family gpt2 --size small --repeats 20

Prints one JSON line per setting: median step time with the delay off (layers none) and on,
and the bytes of slice buffers the controller holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hf_qkdelay import QKDelayArguments, build_optimizer

SIZES = {"tiny": (4, 128, 4), "small": (12, 768, 12)}  # layers, width, heads


def build_model(family: str, size: str):
    layers, width, heads = SIZES[size]
    if family == "gpt2":
        return GPT2LMHeadModel(
            GPT2Config(n_layer=layers, n_embd=width, n_head=heads, vocab_size=32000)
        )
    return LlamaForCausalLM(
        LlamaConfig(
            num_hidden_layers=layers,
            hidden_size=width,
            intermediate_size=4 * width,
            num_attention_heads=heads,
            vocab_size=32000,
        )
    )


def median_step_seconds(model, repeats: int) -> tuple[float, float, int]:
    """Median `step()` time of two optimizers over the same model, delay off and on.

    The two steps alternate, so that drifting machine load falls on both alike; the first
    two rounds (which allocate the optimizer state) are not counted.
    """
    off = build_optimizer(model, QKDelayArguments(qk_delay_layers="none"), lr=1e-4)
    on = build_optimizer(
        model,
        QKDelayArguments(qk_delay_factor=0.1, qk_delay_steps=10**6),
        lr=1e-4,
        total_updates=10**9,
    )
    for param in model.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    timings = {"off": [], "on": []}
    for _ in range(repeats + 2):
        for name, optimizer in (("off", off), ("on", on)):
            start = time.perf_counter()
            optimizer.step()
            timings[name].append(time.perf_counter() - start)
    buffers = sum(
        t.numel() * t.element_size() for t in on.multiplier_controller._saved_slices.values()
    )
    return statistics.median(timings["off"][2:]), statistics.median(timings["on"][2:]), buffers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["gpt2", "llama"], default="gpt2")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model(args.family, args.size)
    off, on, buffer_bytes = median_step_seconds(model, args.repeats)
    print(
        json.dumps(
            {
                "family": args.family,
                "size": args.size,
                "parameters": model.num_parameters(),
                "threads": torch.get_num_threads(),
                "step_seconds_delay_off": round(off, 5),
                "step_seconds_delay_on": round(on, 5),
                "overhead_percent": round(100 * (on - off) / off, 2),
                "slice_buffer_bytes": buffer_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
