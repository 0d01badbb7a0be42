"""Build the offline lm-eval suite from plain-text files and print where it is.

    python evaluation/build_offline_suite.py ../shared/data/wikitext-2/valid.txt
    lm-eval run --model hf --model_args pretrained=RUN_DIR \
        --include_path PRINTED_DIR --tasks offline_lastword,offline_nextsentence,offline_perplexity

`hf-qkdelay eval RUN_DIR --tasks offline --offline_text FILE ...` does the same in one step;
this script is for using the suite with lm-eval's own command line or inspecting the items.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields

from hf_qkdelay.evaluation.offline_suite import OfflineSuiteConfig, build_offline_suite


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("text_files", nargs="+", metavar="FILE", help="plain-text corpus files")
    parser.add_argument(
        "--cache_dir", help="where suites are kept (default: ~/.cache/hf_qkdelay/offline_suite)"
    )
    defaults = OfflineSuiteConfig()
    for field in fields(OfflineSuiteConfig):
        parser.add_argument(
            f"--{field.name}",
            type=int,
            default=getattr(defaults, field.name),
            help="(default: %(default)s)",
        )
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = OfflineSuiteConfig(
        **{field.name: getattr(args, field.name) for field in fields(OfflineSuiteConfig)}
    )
    suite = build_offline_suite(args.text_files, cache_dir=args.cache_dir, config=config)
    print(
        json.dumps({"directory": str(suite.directory), "tasks": suite.manifest["tasks"]}, indent=2)
    )


if __name__ == "__main__":
    main()
