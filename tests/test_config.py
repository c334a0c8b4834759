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


def test_config_imports_nothing_of_the_project():
    import subprocess
    import sys

    code = ("import sys, evoarena.config\n"
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['evoarena', 'envs'], "
            "['evoarena', 'agents'], ['evoarena', 'policies'], ['evoarena', 'training'])))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


TRAIN = "env: {id: dilemma_v0}\npolicies: {main: {}}\nseats: {player_0: {policy: main}, player_1: {agent: random}}\n"
BC = "task: bc\nbc:\n  env: {id: dilemma_v0}\n  expert: scripted:tit_for_tat\n  opponents: [random]\n"


@pytest.mark.parametrize("model, text, over, words", [
    ("TrainConfig", TRAIN, [], None),
    ("TrainConfig", TRAIN, ["seats.player_9.agent=random"], ["seats.player_9", "matches no agent", "player_1"]),
    ("TrainConfig", TRAIN.replace(", player_1: {agent: random}", ""), [], ["seats", "['player_1']", "no seat"]),
    ("TrainConfig", TRAIN, ["env.id=dilema_v0"], ["env.id = 'dilema_v0'", "did you mean 'dilemma_v0'"]),
    ("TrainConfig", TRAIN, ["env.kwargs.num_agents=9"], ["env.kwargs", "num_agents=9", "2..8"]),
    ("TrainConfig", TRAIN, ["env.kwargs.bogus=1"], ["env.kwargs", "'bogus'"]),
    ("FinetuneConfig", BC, [], None),
    ("FinetuneConfig", BC, ["bc.expert=scripted:nope"], ["bc.expert = 'scripted:nope'", "tit_for_tat"]),
    ("FinetuneConfig", BC, ["bc.opponents=[random, scripted:foo]"], ["bc.opponents[1] = 'scripted:foo'",
                                                                      "always_defect"]),
    ("FinetuneConfig", BC, ["bc.clone=[speaker]"], ["bc.clone = ['speaker']", "roles of dilemma_v0: player"]),
    ("FinetuneConfig", BC, ["bc.env.id=nope_v0"], ["bc.env.id = 'nope_v0'", "dilemma_v0"]),
    ("PretrainConfig", "corpus: {envs: [nope_v0]}\n", [], ["corpus.envs", "'nope_v0'", "dilemma_v0"]),
])
def test_world_checks_name_source_key_value_and_allowed(tmp_path, model, text, over, words):
    from evoarena import config
    from evoarena.training.infra.checks import check_config, load_checked

    p = write(tmp_path, text)
    cfg = load_config(p, getattr(config, model), over)  # the schema alone does not build the world
    if words is None:
        assert load_checked(p, getattr(config, model), over) == cfg
        return
    with pytest.raises(ConfigError) as exc:
        check_config(cfg, str(p))
    msg = str(exc.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    with pytest.raises(ConfigError, match="^<config>: "):
        check_config(cfg)


def test_pure_rules_stay_in_the_schema(tmp_path):
    from evoarena.config import FinetuneConfig, TrainConfig

    with pytest.raises(ConfigError, match="no seat is filled by a learner policy"):
        load_config(write(tmp_path, TRAIN.replace("policy: main", "agent: random")), TrainConfig)
    with pytest.raises(ConfigError, match="names policy 'other'"):
        load_config(write(tmp_path, TRAIN), TrainConfig, ["seats.player_0.policy=other"])
    with pytest.raises(ConfigError, match=r"bc\.expert = 'human'.*fixed agent"):
        load_config(write(tmp_path, BC), FinetuneConfig, ["bc.expert=human"])
    with pytest.raises(ConfigError, match="overlap the demonstration seeds"):
        load_config(write(tmp_path, BC), FinetuneConfig, ["bc.eval_seed=0"])
