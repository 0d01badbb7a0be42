"""Saving the 32 variants with safetensors and loading them back: in this process through the
registered Auto classes, and in a fresh process from the saved code (`trust_remote_code`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from .helpers import VARIANT_IDS, VARIANTS, build_model, text_batch, variant_id

# What a fresh process must find in a saved folder to load it without hf_qkdelay.
CODE_FILES = {
    "qkd_gpt2": {"configuration_qkd_gpt2.py", "modeling_qkd_gpt2.py", "switches.py", "norms.py"},
    "qkd_llama": {"configuration_qkd_llama.py", "modeling_qkd_llama.py", "switches.py", "norms.py"},
}
AUTO_MAP = {
    "qkd_gpt2": {
        "AutoConfig": "configuration_qkd_gpt2.QKDGPT2Config",
        "AutoModelForCausalLM": "modeling_qkd_gpt2.QKDGPT2LMHeadModel",
    },
    "qkd_llama": {
        "AutoConfig": "configuration_qkd_llama.QKDLlamaConfig",
        "AutoModelForCausalLM": "modeling_qkd_llama.QKDLlamaForCausalLM",
    },
}


@pytest.fixture(scope="module")
def saved_variants(tmp_path_factory, bpe_tokenizer, shakespeare_text):
    """Every variant saved once: {id: (folder, model, logits on a batch of real text)}, and the batch."""
    root = tmp_path_factory.mktemp("variants")
    batch = text_batch(bpe_tokenizer, shakespeare_text)
    saved = {}
    for family, switches in VARIANTS:
        model = build_model(family, switches).eval()
        folder = root / variant_id(family, switches)
        model.save_pretrained(folder)
        with torch.no_grad():
            saved[variant_id(family, switches)] = (folder, model, model(batch).logits)
    return saved, batch


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_saved_folder_holds_safetensors_auto_map_and_code(family, switches, saved_variants):
    saved, _ = saved_variants
    folder, model, _ = saved[variant_id(family, switches)]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == family
    assert config["auto_map"] == AUTO_MAP[family]
    assert CODE_FILES[family] <= set(os.listdir(folder))

    # The safetensors file holds exactly the model's tensors (the tied head once).
    tensors = load_file(folder / "model.safetensors")
    expected = {name: p for name, p in model.state_dict().items() if name != "lm_head.weight"}
    assert set(tensors) == set(expected)
    assert all(torch.equal(tensors[name], expected[name]) for name in tensors)


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_reload_through_auto_class_in_process(family, switches, saved_variants):
    saved, batch = saved_variants
    folder, model, logits = saved[variant_id(family, switches)]
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(reloaded) is type(model)
    for name, value in switches.items():
        assert getattr(reloaded.config, name) == value
    reloaded_state = reloaded.state_dict()
    assert all(torch.equal(reloaded_state[name], p) for name, p in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(reloaded(batch).logits, logits)


# Runs in a fresh interpreter: loads every folder from its own saved code, never from hf_qkdelay.
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    folders, batch_file, output_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    batch = torch.load(batch_file)
    results = {}
    for name, folder in folders.items():
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            results[name] = model(batch).logits
        results[name + ":module"] = type(model).__module__
    results["hf_qkdelay imported"] = any(m.startswith("hf_qkdelay") for m in sys.modules)
    torch.save(results, output_file)
    """
)


@pytest.mark.slow
def test_reload_with_trust_remote_code_in_a_fresh_process(saved_variants, tmp_path):
    # One subprocess for all 32 folders: importing transformers costs seconds per process.
    saved, batch = saved_variants
    torch.save(batch, tmp_path / "batch.pt")
    folders = {name: str(folder) for name, (folder, _, _) in saved.items()}
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),  # the copied code goes here, not to ~/.cache
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS_SCRIPT,
            json.dumps(folders),
            str(tmp_path / "batch.pt"),
            str(tmp_path / "results.pt"),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = torch.load(tmp_path / "results.pt")

    assert results["hf_qkdelay imported"] is False
    for name, (_, _, logits) in saved.items():
        assert results[name + ":module"].startswith("transformers_modules.")
        assert torch.equal(results[name], logits), name
