"""The one config loader: YAML + --set overrides, errors that name file, key, value and what is allowed."""

import pytest

from evoarena.config import ConfigError, PolicyConfig, apply_overrides, dump_config, load_config


def write(tmp_path, text, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_with_overrides(tmp_path):
    p = write(tmp_path, "head: linear\nencoder:\n  preset: tiny\n  hidden_size: 64\n")
    cfg = load_config(p, PolicyConfig, ["encoder.num_layers=3", "head=scoring", "mlp_hidden=[8, 8]"])
    assert cfg.encoder.hidden_size == 64 and cfg.encoder.num_layers == 3
    assert cfg.head == "scoring" and cfg.mlp_hidden == [8, 8]
    again = load_config(write(tmp_path, dump_config(cfg), "dumped.yaml"), PolicyConfig)
    assert again == cfg


def test_unknown_key_names_file_path_and_allowed(tmp_path):
    p = write(tmp_path, "encoder:\n  hiden_size: 64\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, PolicyConfig)
    msg = str(exc.value)
    assert str(p) in msg and "encoder.hiden_size" in msg and "hidden_size" in msg and "did you mean" in msg


def test_bad_value_names_value_and_allowed(tmp_path):
    p = write(tmp_path, "encoder:\n  pooling: max\n")
    with pytest.raises(ConfigError, match=r"encoder\.pooling = 'max'.*'cls', 'mean' or 'last'"):
        load_config(p, PolicyConfig)
    with pytest.raises(ConfigError, match=r"encoder\.num_layers = 0"):
        load_config(write(tmp_path, "{}"), PolicyConfig, ["encoder.num_layers=0"])


def test_cross_field_rule(tmp_path):
    with pytest.raises(ConfigError, match="num_heads"):
        load_config(write(tmp_path, "encoder: {hidden_size: 100, num_heads: 3}\n"), PolicyConfig)


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", PolicyConfig)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"), PolicyConfig)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), PolicyConfig)
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"head": "linear"}, ["head.x=1"])


def test_override_creates_nested_and_parses_yaml():
    out = apply_overrides({"a": {"b": 1}}, ["a.c=2.5", "d.e=true", "f=hello"])
    assert out == {"a": {"b": 1, "c": 2.5}, "d": {"e": True}, "f": "hello"}
