"""`hf-qkdelay compare`: mean +/- std over seeds per configuration, and the difference from a baseline."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Compare run folders written by recipes/pretrain.py.

Each RUN folder holds all_results.json (perplexity, eval_loss, seed, run_config) and,
when lm-eval ran, lm_eval_results.json. Runs whose run_config agree on the grouping keys
(--group_by; default every key) form one GROUP; the runs of a group differ by seed.

GROUP names: a group is labelled by the grouping keys whose values differ between the
groups, as key=value pairs joined by commas, e.g.
    qk_delay_factor=0.1,qk_delay_layers=upper
or `all` when every run has the same configuration. --baseline takes such a label, or
any key=value pairs that pick out exactly one group, e.g. --baseline qk_delay_layers=none.

The table has one row per metric and group: mean +/- sample std (n - 1) over seeds, the
number of seeds, and the difference from the baseline group with a 95% Welch t interval
(n/a, with a footnote, when a side has a single run or both sides have std 0: the Welch
degrees of freedom are then undefined). It is printed and saved as OUT.md, OUT.json, OUT.csv.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare run folders: mean +/- std over seeds and the difference from a baseline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    parser.add_argument(
        "--baseline",
        required=True,
        metavar="GROUP",
        help="baseline group: its label or key=value[,key=value] pairs matching one group",
    )
    parser.add_argument(
        "--group_by",
        nargs="+",
        metavar="KEY",
        help="run_config keys that define a group (default: all keys)",
    )
    parser.add_argument(
        "--out",
        default="comparison",
        help="output path without suffix; writes OUT.md, OUT.json and OUT.csv "
        "(default: ./comparison)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hf_qkdelay.evaluation.compare import (
        compare_groups,
        find_group,
        format_markdown,
        group_runs,
        load_run,
        write_comparison,
    )

    groups = group_runs([load_run(path) for path in args.runs], group_by=args.group_by)
    baseline = find_group(groups, args.baseline)
    rows = compare_groups(groups, baseline)
    print(format_markdown(rows, baseline.label))
    paths = write_comparison(rows, groups, baseline, args.out)
    print("Written: " + ", ".join(str(path) for path in paths))
    return 0
