"""The README's plain-loop example runs as written (with fewer, smaller updates)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def plain_loop_block() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- plain-loop:.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its plain-loop example"
    return match.group(1)


def test_plain_loop_example_runs_and_delays_qk():
    code = plain_loop_block()
    assert "total_updates = 1000" in code and "(8, 128)" in code
    code = code.replace("total_updates = 1000", "total_updates = 3").replace("(8, 128)", "(2, 16)")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    optimizer = namespace["optimizer"]
    assert optimizer.param_groups[0]["multiplier_updates"] == 3
    # 0.2 of 3 updates resolves to a window of 1 update.
    assert optimizer.multiplier_controller.schedules["qk_delay"].steps == 1
    assert optimizer.multiplier_controller.last_multipliers == {"qk_delay": 1.0}
