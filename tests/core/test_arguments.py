import pytest
from transformers import HfArgumentParser

from hf_qkdelay import QKDelayArguments


def test_flags_parse_with_hf_argument_parser():
    (args,) = HfArgumentParser(QKDelayArguments).parse_args_into_dataclasses(
        [
            "--qk_delay_layers",
            "8-11",
            "--qk_delay_factor",
            "0.2",
            "--qk_delay_steps",
            "500",
            "--qk_delay_schedule",
            "cosine",
            "--qk_delay_targets",
            "q,k,v",
        ]
    )
    (rule,) = args.to_rules()
    assert (rule.layers, rule.projections) == ("8-11", ("q", "k", "v"))
    assert (rule.schedule.kind, rule.schedule.factor, rule.schedule.steps) == ("cosine", 0.2, 500)
    assert isinstance(rule.schedule.steps, int)


def test_every_way_of_switching_off_gives_the_same_run_settings():
    off = [
        QKDelayArguments(qk_delay_layers="none"),
        QKDelayArguments(qk_delay_factor=1.0),
        QKDelayArguments(qk_delay_steps=0),
        QKDelayArguments(qk_delay_layers="none", qk_delay_factor=0.3, qk_delay_schedule="linear"),
    ]
    assert not any(args.enabled for args in off)
    settings = [args.run_settings() for args in off]
    assert all(s == settings[0] for s in settings)
    assert settings[0]["qk_delay_layers"] == "none" and settings[0]["qk_delay_factor"] == 1.0
    on = QKDelayArguments(qk_delay_steps=300.0).run_settings()
    assert on == {
        "qk_delay_layers": "upper",
        "qk_delay_factor": 0.1,
        "qk_delay_steps": 300,
        "qk_delay_schedule": "constant",
        "qk_delay_targets": "q,k",
        "qk_delay_rules": None,
    }


def test_rules_file_replaces_the_flags_and_is_identified_by_content(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("rules:\n  - {name: qk, layers: upper, schedule: {factor: 0.1, steps: 10}}\n")
    second.write_text("rules:\n  - {name: qk, layers: upper, schedule: {factor: 0.2, steps: 10}}\n")
    a, b = (QKDelayArguments(qk_delay_rules=str(path)).run_settings() for path in (first, second))
    assert a["qk_delay_rules"].startswith("qk@") and a["qk_delay_rules"] != b["qk_delay_rules"]
    assert a["qk_delay_factor"] is None
    with pytest.raises(
        ValueError,
        match="replaces the flags `qk_delay_factor`, `qk_delay_layers`|replaces the flags",
    ):
        QKDelayArguments(qk_delay_rules=str(first), qk_delay_factor=0.5, qk_delay_layers="0")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "rules:\n  - {name: a, layers: all, schedule: {factor: 0.1, foo: 1}}\n",
            r"unknown keys \['foo'\]",
        ),
        ("rules:\n  - {name: a, layers: all, bar: 2}\n", r"unknown keys \['bar'\]"),
        ("rules: {}\n", "non-empty top-level `rules:` list"),
    ],
)
def test_rules_file_problems_fail_at_construction(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        QKDelayArguments(qk_delay_rules=str(path))


def test_missing_rules_file():
    with pytest.raises(ValueError, match="`qk_delay_rules`='nope.yaml' is not a file"):
        QKDelayArguments(qk_delay_rules="nope.yaml")


def test_layers_are_checked_against_the_model_depth():
    QKDelayArguments(qk_delay_layers="top:4").check_layers(4)
    with pytest.raises(ValueError, match="K in `top:K` must be an integer from 1 to 4"):
        QKDelayArguments(qk_delay_layers="top:9").check_layers(4)


def test_layer_syntax_is_checked_without_a_model_depth():
    with pytest.raises(ValueError, match="K in `top:K` must be a positive integer"):
        QKDelayArguments(qk_delay_layers="top:0")


def test_errors_name_the_rule_whose_layers_do_not_fit(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: deep, layers: 2-9, schedule: {factor: 0.1, steps: 10}}\n")
    with pytest.raises(ValueError, match=r"`rules\[deep\]\.layers`='2-9' names layer 9"):
        QKDelayArguments(qk_delay_rules=str(path)).check_layers(4)


def test_malformed_rules_yaml(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [ {name: a\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        QKDelayArguments(qk_delay_rules=str(path))
