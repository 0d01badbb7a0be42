"""The delay under DDP: two gloo ranks on the CPU, launched with torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_two_cpu_ranks_apply_the_same_delay(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(WORKER),
        str(tmp_path),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    # Factor 0 for two updates, then 1: Q/K move only at the third update.
    assert ranks[0]["multipliers"] == [0.0, 0.0, 1.0]
    assert ranks[0]["qk_frozen_during_window"] and ranks[1]["qk_frozen_during_window"]
    assert ranks[0]["qk_moved"] and ranks[0]["v_moved"]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
