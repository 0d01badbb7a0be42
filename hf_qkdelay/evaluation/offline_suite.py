"""An lm-eval task suite built from any plain-text corpus, for machines without the Hub.

Three tasks, each a JSONL data file plus an lm-eval YAML that points at it by absolute path:

- `offline_lastword`: predict the last word of a passage (LAMBADA-style; acc, perplexity);
- `offline_nextsentence`: choose the true second half of a sentence among four, the three
  distractors being second halves of sentences from elsewhere in the same text
  (HellaSwag-style; acc, acc_norm);
- `offline_perplexity`: rolling perplexity and bits per byte over documents.

The build is deterministic (a seeded `random.Random`) and cached under a folder named by
the SHA-256 of the corpus bytes, the settings and the builder version, so the same corpus
always yields the same items and is built once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

# Bump when the item construction changes, so that old caches are not reused.
BUILDER_VERSION = 3

OFFLINE_TASKS = ("offline_lastword", "offline_nextsentence", "offline_perplexity")
MANIFEST_NAME = "manifest.json"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A full stop after these does not end a sentence.
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Mt.", "Sr.", "Jr.", "Capt.", "Col.", "Gen.")
# An initial ("H. Milne") does not end a sentence either.
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.$")
# A clean target word: letters only (an inner apostrophe or hyphen allowed), then at most
# trailing punctuation, which is dropped from the target as LAMBADA does.
_TARGET_WORD = re.compile(r"^([A-Za-z]+(?:['-][A-Za-z]+)*)[.,;:!?'\")\]]*$")


@dataclass(frozen=True)
class OfflineSuiteConfig:
    """How many items each task gets and how they are cut from the corpus."""

    seed: int = 1234  # seeds every random choice of the build
    num_lastword_items: int = 500  # upper bound; a small corpus yields fewer
    num_nextsentence_items: int = 500  # upper bound; a small corpus yields fewer
    num_documents: int = 100  # upper bound on rolling-perplexity documents
    passage_words: int = 40  # a last-word passage grows by paragraphs until this many words
    document_chars: int = 2000  # a perplexity document grows by paragraphs until this size
    min_sentence_words: int = 8  # sentences shorter than this are never split into a question
    max_sentence_words: int = 50  # nor longer ones, so that an ending fits a small context

    def __post_init__(self):
        for name in ("num_lastword_items", "num_nextsentence_items", "num_documents"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}`={getattr(self, name)} must be at least 1.")
        if self.passage_words < 4:
            raise ValueError(f"`passage_words`={self.passage_words} must be at least 4.")
        if self.document_chars < 1:
            raise ValueError(f"`document_chars`={self.document_chars} must be at least 1.")
        if self.max_sentence_words < self.min_sentence_words:
            raise ValueError(
                f"`max_sentence_words`={self.max_sentence_words} must be at least "
                f"`min_sentence_words`={self.min_sentence_words}."
            )
        if self.min_sentence_words < 4:
            raise ValueError(
                f"`min_sentence_words`={self.min_sentence_words} must be at least 4 (two words "
                "of context and two of ending)."
            )


@dataclass(frozen=True)
class OfflineSuite:
    """A built suite: the folder to pass to lm-eval's `TaskManager(include_path=...)`."""

    directory: Path
    manifest: dict

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["tasks"])

    def num_documents(self, task: str) -> int:
        return self.manifest["tasks"][task]["num_documents"]


def default_cache_dir() -> Path:
    """`$HF_QKDELAY_CACHE/offline_suite`, by default `~/.cache/hf_qkdelay/offline_suite`."""
    root = os.environ.get("HF_QKDELAY_CACHE") or Path.home() / ".cache" / "hf_qkdelay"
    return Path(root) / "offline_suite"


def build_offline_suite(
    text_files: list[str | os.PathLike] | str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    config: OfflineSuiteConfig | None = None,
) -> OfflineSuite:
    """Build (or find in the cache) the offline suite for the corpus in `text_files`.

    The files are read as UTF-8 text and concatenated in the order given. Returns the suite
    folder with its manifest (sources and their hashes, settings, documents per task).
    """
    config = config or OfflineSuiteConfig()
    if isinstance(text_files, (str, os.PathLike)):
        text_files = [text_files]
    if not text_files:
        raise ValueError("`offline_text` is empty: name at least one plain-text file.")
    paths = [Path(path).expanduser().resolve() for path in text_files]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"`offline_text` names {str(path)!r}, which is not a file.")

    # The cache key covers every byte of the corpus and every setting of the build.
    digest = hashlib.sha256(f"builder={BUILDER_VERSION}|{asdict(config)}".encode())
    for task in OFFLINE_TASKS:
        digest.update(_template(task).read_bytes())
    sources = []
    texts = []
    for path in paths:
        raw = path.read_bytes()
        digest.update(len(raw).to_bytes(8, "little") + raw)
        sources.append(
            {"path": str(path), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        )
        texts.append(raw.decode("utf-8", errors="replace"))
    suite_dir = Path(cache_dir or default_cache_dir()).expanduser().resolve()
    suite_dir = suite_dir / digest.hexdigest()[:16]
    manifest_path = suite_dir / MANIFEST_NAME
    if manifest_path.is_file():
        logger.info("Offline suite found in the cache: %s", suite_dir)
        return OfflineSuite(suite_dir, json.loads(manifest_path.read_text()))

    # Build in a private folder and rename it into place, so that concurrent builders (one
    # per training process) never see a half-written suite.
    suite_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=suite_dir.parent))
    try:
        paragraphs = [p for text in texts for p in _split_paragraphs(text)]
        rng = random.Random(config.seed)
        items = {
            "offline_lastword": build_lastword_items(paragraphs, config, rng),
            "offline_nextsentence": build_nextsentence_items(paragraphs, config, rng),
            "offline_perplexity": build_perplexity_documents(paragraphs, config, rng),
        }
        manifest = {
            "builder_version": BUILDER_VERSION,
            "config": asdict(config),
            "sources": sources,
            "tasks": {},
        }
        for task, task_items in items.items():
            if not task_items:
                raise ValueError(
                    f"`offline_text` ({', '.join(map(str, paths))}) is too short to build any "
                    f"`{task}` item; give more text."
                )
            # Data and task files are written with their final absolute paths.
            data_file = suite_dir / f"{task}.jsonl"
            with open(staging / data_file.name, "w", encoding="utf-8") as handle:
                for item in task_items:
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
            _write_task_yaml(task, data_file, staging / f"{task}.yaml")
            manifest["tasks"][task] = {
                "num_documents": len(task_items),
                "data_file": str(data_file),
            }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        try:
            staging.rename(suite_dir)
        except OSError:
            # Another process finished the same build first; its result is identical.
            if not manifest_path.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "Built the offline suite in %s: %s",
        suite_dir,
        ", ".join(f"{task} {len(task_items)} items" for task, task_items in items.items()),
    )
    return OfflineSuite(suite_dir, json.loads(manifest_path.read_text()))


def build_lastword_items(
    paragraphs: list[str], config: OfflineSuiteConfig, rng: random.Random
) -> list[dict]:
    """Passages of whole paragraphs, at least `passage_words` words (at most four times that).

    The target is the passage's last clean word (letters only), without its punctuation.
    """
    passages = []
    words: list[str] = []
    for paragraph in paragraphs:
        words.extend(paragraph.split())
        if len(words) < config.passage_words:
            continue
        # Very long paragraphs are cut to their last words: at most four passages' worth.
        item = _cut_last_word(words[-4 * config.passage_words :], config.passage_words // 2)
        if item is not None:
            passages.append(item)
        words = []
    return _sample_in_order(passages, config.num_lastword_items, rng)


def build_nextsentence_items(
    paragraphs: list[str], config: OfflineSuiteConfig, rng: random.Random
) -> list[dict]:
    """Sentence halves: context + first half, the true second half and three distractors."""
    # Sentences in reading order; each long enough is split at its middle word.
    sentences = [s for paragraph in paragraphs for s in _split_sentences(paragraph)]
    halves = {}
    for index, sentence in enumerate(sentences):
        words = sentence.split()
        if config.min_sentence_words <= len(words) <= config.max_sentence_words:
            middle = len(words) // 2
            halves[index] = (" ".join(words[:middle]), " ".join(words[middle:]))
    candidates = [index for index in halves if index >= 2]
    if len(halves) < 8:
        return []
    chosen = _sample_in_order(candidates, config.num_nextsentence_items, rng)
    by_length: dict[int, list[int]] = {}
    for index, (_, ending) in halves.items():
        by_length.setdefault(len(ending.split()), []).append(index)

    items = []
    for index in chosen:
        first_half, true_ending = halves[index]
        context = " ".join(sentences[index - 2 : index] + [first_half])

        # Distractors: endings with the same number of words (else the nearest count), from
        # sentences at least 20 away. Equal lengths keep an untrained model at chance.
        length = len(true_ending.split())
        distractors: list[str] = []
        for spread in range(config.max_sentence_words):
            pool = by_length.get(length - spread, []) + (
                by_length.get(length + spread, []) if spread else []
            )
            for _ in range(min(30, 3 * len(pool))):
                other = pool[rng.randrange(len(pool))]
                ending = halves[other][1]
                if abs(other - index) < 20 or ending == true_ending or ending in distractors:
                    continue
                distractors.append(ending)
                if len(distractors) == 3:
                    break
            if len(distractors) == 3:
                break
        if len(distractors) < 3:
            continue
        label = rng.randrange(4)
        endings = distractors[:label] + [true_ending] + distractors[label:]
        items.append({"context": context, "endings": endings, "label": label})
    return items


def build_perplexity_documents(
    paragraphs: list[str], config: OfflineSuiteConfig, rng: random.Random
) -> list[dict]:
    """Runs of whole paragraphs, verbatim, of at least `document_chars` characters."""
    documents = []
    current: list[str] = []
    size = 0
    for paragraph in paragraphs:
        current.append(paragraph)
        size += len(paragraph)
        if size >= config.document_chars:
            documents.append({"text": "\n\n".join(current)})
            current, size = [], 0
    if current and not documents:
        documents.append({"text": "\n\n".join(current)})
    return _sample_in_order(documents, config.num_documents, rng)


def _split_paragraphs(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def _split_sentences(paragraph: str) -> list[str]:
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(" ".join(paragraph.split())):
        if sentences and (sentences[-1].endswith(_ABBREVIATIONS) or _INITIAL.search(sentences[-1])):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return sentences


def _cut_last_word(words: list[str], min_context_words: int) -> dict | None:
    # Walk back from the end to the last clean word; its trailing punctuation is dropped.
    for position in range(len(words) - 1, min_context_words - 1, -1):
        match = _TARGET_WORD.match(words[position])
        if match and len(match.group(1)) >= 2:
            return {"context": " ".join(words[:position]), "target": match.group(1)}
    return None


def _sample_in_order(items: list, count: int, rng: random.Random) -> list:
    if len(items) <= count:
        return list(items)
    keep = sorted(rng.sample(range(len(items)), count))
    return [items[i] for i in keep]


def _write_task_yaml(task: str, data_file: Path, destination: Path) -> None:
    task_config = yaml.safe_load(_template(task).read_text(encoding="utf-8"))
    # NOTE: an absolute path; lm-eval would resolve a relative one against the cwd.
    task_config["dataset_kwargs"]["data_files"]["test"] = str(data_file)
    destination.write_text(yaml.safe_dump(task_config, sort_keys=False), encoding="utf-8")


def _template(task: str):
    # Package data, so that an installed package finds it too.
    return resources.files("hf_qkdelay.evaluation") / "templates" / f"{task}.yaml"
