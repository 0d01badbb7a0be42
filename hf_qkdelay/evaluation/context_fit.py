"""Offline items that do not fit the model's context: found before lm-eval scores them.

lm-eval's `HFLM` scores a (context, continuation) pair inside `max_length` tokens (the model's
positions, or the `max_length` given). A context that is too long is cut from the left, as it
is for every lm-eval task, and the item is still scored on the continuation. A continuation
longer than `max_length` cannot be scored at all (`HFLM` asserts), and a multiple-choice item
with one such ending cannot be scored fairly either: its other endings would win by default.
Such items are left out of the evaluation, counted per task, logged as a warning and written
into the results (`results["offline_suite"]["context_fit"]`), so that a model with few
positions gets scores on every item it can read, and the reader knows how many it could not.

The lengths are counted with the model's own tokenizer exactly as `HFLM` encodes the requests
(`_encode_pair`, and an empty context replaced by the prefix token), so an item is left out
here if and only if `HFLM` would refuse it.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# Output types whose requests carry a continuation that must fit the context whole.
SCORED_CONTINUATION_TYPES = ("loglikelihood", "multiple_choice")


def drop_items_longer_than_context(tasks: dict, lm) -> dict[str, dict]:
    """Leave out of each of `tasks` (name -> lm-eval `Task`) the items with a continuation
    longer than `lm.max_length` tokens; return per task the counts, for the results.

    `num_context_truncated` counts the items kept whose zero-shot context is cut from the left
    by lm-eval (few-shot examples lengthen the context further, never the continuation).
    Raises `ValueError` when no item of a task fits.
    """
    max_length = lm.max_length
    report = {}
    for name, task in tasks.items():
        if task.OUTPUT_TYPE not in SCORED_CONTINUATION_TYPES:
            continue
        split = task.config.test_split
        # NOTE: the offline templates have no `process_docs`, so the split is what is scored.
        docs = task.dataset[split]

        # Count each item: kept when every continuation fits, truncated when a context is cut.
        kept = []
        num_context_truncated = 0
        for index, doc in enumerate(docs):
            requests = task.construct_requests(doc, task.doc_to_text(doc))
            if not isinstance(requests, list):
                requests = [requests]
            lengths = [_encoded_lengths(lm, *request.args[:2]) for request in requests]
            if any(continuation > max_length for _, continuation in lengths):
                continue
            kept.append(index)
            if any(sum(pair) > max_length + 1 for pair in lengths):
                num_context_truncated += 1

        report[name] = {
            "max_length": max_length,
            "num_items": len(docs),
            "num_scored": len(kept),
            "num_unscorable": len(docs) - len(kept),
            "num_context_truncated": num_context_truncated,
        }
        if not kept:
            raise ValueError(
                f"No item of `{name}` fits the model's context of {max_length} tokens (each has "
                "an ending longer than that): give the model more positions (`max_length`), or "
                "build the suite with a smaller `max_sentence_words`."
            )
        if len(kept) < len(docs):
            logger.warning(
                "%s: %d of %d items left out, each with a continuation longer than the model's "
                "context of %d tokens; the scores are over the other %d.",
                name,
                len(docs) - len(kept),
                len(docs),
                max_length,
                len(kept),
            )
            task.dataset[split] = docs.select(kept)
    return report


def _encoded_lengths(lm, context: str, continuation: str) -> tuple[int, int]:
    # As `TemplateLM.loglikelihood` encodes a request: (context tokens, continuation tokens).
    if context == "":
        tokens = lm.tok_encode(continuation, add_special_tokens=False)
        starts_with_prefix = tokens[:1] == [lm.prefix_token_id]
        return 1, len(tokens) - starts_with_prefix
    context_tokens, continuation_tokens = lm._encode_pair(context, continuation)
    return len(context_tokens), len(continuation_tokens)
