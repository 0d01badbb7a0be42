"""Cost of the Q/K diagnostics: training time with the callback against training without it.

    python benchmarks/diagnostics_overhead.py                    # tiny preset, interval 100, CPU
    python benchmarks/diagnostics_overhead.py --interval_steps 50 --repeats 5

Runs the same short Trainer pretraining (tiny preset, local BPE on tiny Shakespeare) with and
without `QKDiagnosticsCallback`, alternating, and reports two figures:
- measured: median wall time with diagnostics over median without, minus 1 (noisy on a shared
  machine: both runs do the same updates, so the difference is the probes plus noise);
- steady state: within each run with diagnostics, the time of one probe (timed around it)
  over the time of `interval_steps` updates of that same run (its time outside the probes):
  the cost over a long run, robust to the load of a shared machine, which moves both alike.
Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

from hf_qkdelay.diagnostics import QKDiagnosticsCallback, build_probe_batch
from hf_qkdelay.models import preset_config
from hf_qkdelay.tokenization import train_bpe_tokenizer

DATA_DIR = Path(
    os.environ.get("HF_QKDELAY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


class TimedDiagnostics(QKDiagnosticsCallback):
    """The callback, with the wall time of every probe recorded."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.probe_seconds: list[float] = []

    def probe(self, model):
        start = time.perf_counter()
        record = super().probe(model)
        self.probe_seconds.append(time.perf_counter() - start)
        return record


def build_blocks(block_size: int) -> torch.Tensor:
    text = (DATA_DIR / "tinyshakespeare.txt").read_text(encoding="utf-8")
    tokenizer = train_bpe_tokenizer(text[:200_000].splitlines(), vocab_size=512)
    ids = tokenizer(text[:400_000])["input_ids"]
    usable = len(ids) // block_size * block_size
    return torch.tensor(ids[:usable]).view(-1, block_size)


def train_once(
    args, blocks: torch.Tensor, diagnostics: bool, output_dir: str
) -> tuple[float, list[float]]:
    set_seed(0)
    config = preset_config(args.model_type, args.model_size)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    train_blocks, held_out = (
        blocks[: -args.probe_sequences].tolist(),
        blocks[-args.probe_sequences :].tolist(),
    )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=output_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3,
            logging_steps=50,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
        ),
        train_dataset=Dataset.from_dict({"input_ids": train_blocks, "labels": train_blocks}),
    )
    callback = None
    if diagnostics:
        input_ids, attention_mask = build_probe_batch(
            [{"input_ids": row} for row in held_out], args.probe_sequences
        )
        callback = TimedDiagnostics(
            input_ids, args.interval_steps, probe_attention_mask=attention_mask
        )
        callback.attach(trainer)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, (callback.probe_seconds if callback else [])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model_type", default="gpt2", help="A preset family: gpt2, llama, qkd_gpt2, qkd_llama."
    )
    parser.add_argument("--model_size", default="tiny")
    parser.add_argument("--steps", type=int, default=300, help="Optimizer updates per run.")
    parser.add_argument("--interval_steps", type=int, default=100, help="Updates between probes.")
    parser.add_argument("--batch_size", type=int, default=8, help="Sequences per update.")
    parser.add_argument("--block_size", type=int, default=128, help="Tokens per sequence.")
    parser.add_argument(
        "--probe_sequences", type=int, default=8, help="Sequences in the probe batch."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each kind (alternating).")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()

    blocks = build_blocks(args.block_size)
    times = {False: [], True: []}
    steady_state = []
    in_run_share = []
    probe_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for diagnostics in (False, True):
                output_dir = os.path.join(scratch, f"{repeat}{diagnostics}")
                seconds, probes = train_once(args, blocks, diagnostics, output_dir)
                times[diagnostics].append(seconds)
                probe_seconds += probes
                probe_list = ", ".join(f"{1000 * p:.0f}" for p in probes)
                print(
                    f"run {repeat} diagnostics={'on ' if diagnostics else 'off'}: {seconds:.2f} s"
                    + (f" (probes: {probe_list} ms)" if probes else "")
                )
                if diagnostics:
                    # Within one run: a probe against `interval_steps` updates of that same run,
                    # so that the load of a shared machine affects both sides alike.
                    seconds_per_update = (seconds - sum(probes)) / args.steps
                    in_run_share.append(sum(probes) / (seconds - sum(probes)))
                    steady_state.append(
                        statistics.mean(probes) / (args.interval_steps * seconds_per_update)
                    )

    off, on = statistics.median(times[False]), statistics.median(times[True])
    probes_per_run = len(probe_seconds) / args.repeats
    print(
        f"\n{args.model_type} {args.model_size}, {args.steps} updates of {args.batch_size}x{args.block_size} "
        f"tokens, probe {args.probe_sequences}x{args.block_size} every {args.interval_steps} updates "
        f"({probes_per_run:.0f} probes per run), torch threads {torch.get_num_threads()}"
    )
    print(
        f"median training time: off {off:.2f} s, on {on:.2f} s; "
        f"one probe {1000 * statistics.median(probe_seconds):.0f} ms"
    )
    print(f"measured overhead (median on / median off - 1): {100 * (on / off - 1):+.1f}%")
    print(
        "probe time over training time within each run (all probes, step 0 included): "
        + ", ".join(f"{100 * value:.1f}%" for value in in_run_share)
        + f"; median {100 * statistics.median(in_run_share):.1f}%"
    )
    print(
        "steady-state overhead (one probe per interval, within each run): "
        + ", ".join(f"{100 * value:.1f}%" for value in steady_state)
        + f"; median {100 * statistics.median(steady_state):.1f}%"
    )


if __name__ == "__main__":
    main()
