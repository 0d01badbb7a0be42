"""`hf-qkdelay eval`: zero-shot evaluation of a run folder or Hub model with lm-eval."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Evaluate a saved run folder (or a Hub model id) with lm-evaluation-harness.

--tasks takes comma-separated lm-eval task names and two suite names:
  standard  lambada_openai,hellaswag,piqa,arc_easy,arc_challenge,winogrande,openbookqa
            (needs the Hub or a warm datasets cache)
  offline   offline_lastword,offline_nextsentence,offline_perplexity, built from the
            plain-text files given to --offline_text (once, cached by content; runs with
            HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1)

lm-eval's results JSON is written to --output_path and a Markdown table to stdout.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="zero-shot evaluation with lm-evaluation-harness (standard or offline suite)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="run folder (model, config and tokenizer) or Hub model id")
    parser.add_argument(
        "--tasks",
        required=True,
        help="comma-separated lm-eval task names and suites (`standard`, `offline`)",
    )
    parser.add_argument(
        "--output_path", required=True, help="file to write lm-eval's results JSON to"
    )
    parser.add_argument(
        "--offline_text",
        nargs="+",
        metavar="FILE",
        help="plain-text file(s) the offline suite is built from (needed for `offline`)",
    )
    parser.add_argument(
        "--offline_cache_dir",
        help="where built offline suites are kept (default: $HF_QKDELAY_CACHE/offline_suite, "
        "else ~/.cache/hf_qkdelay/offline_suite)",
    )
    parser.add_argument(
        "--batch_size", type=int, default=8, help="sequences per forward pass (default: 8)"
    )
    parser.add_argument(
        "--limit",
        type=float,
        help="items per task: a count, or a fraction when below 1 (default: all; for testing)",
    )
    parser.add_argument(
        "--num_fewshot", type=int, help="few-shot examples (default: each task's own, 0 for ours)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16", "auto"],
        help="weights dtype for evaluation (default: float32)",
    )
    parser.add_argument(
        "--bootstrap_iters",
        type=int,
        default=1000,
        help="lm-eval resamples for the standard errors of perplexity metrics (0 = none)",
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="allow model code from the Hub"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Heavy imports here, so that `hf-qkdelay --help` stays fast.
    from hf_qkdelay.evaluation.harness import evaluate_pretrained
    from hf_qkdelay.evaluation.results import format_results_table

    limit = args.limit
    if limit is not None and limit >= 1:
        if limit != int(limit):
            raise ValueError(f"`--limit`={limit}: a value of 1 or more must be a whole count.")
        limit = int(limit)
    results = evaluate_pretrained(
        args.model,
        args.tasks,
        args.output_path,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        batch_size=args.batch_size,
        limit=limit,
        num_fewshot=args.num_fewshot,
        offline_text=args.offline_text,
        offline_cache_dir=args.offline_cache_dir,
        bootstrap_iters=args.bootstrap_iters,
    )
    print(format_results_table(results))
    print(f"Results written to {args.output_path}")
    return 0
