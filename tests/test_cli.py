import argparse
import re
import subprocess
import sys

import pytest

from zotrain import cli


def test_help_lists_every_subcommand_with_its_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    listed = dict(re.findall(r"^    (\S+) +(\S.*)$", out, re.M))
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(listed) == set(sub.choices) == {"data", "models", "train", "export", "device",
                                                "pinn"}
    for name, parser in sub.choices.items():
        assert parser.prog == f"zotrain {name}" and listed[name]
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: zotrain {name}")


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "zotrain.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: zotrain" in r.stdout


def test_data_command(mnist_dir, tmp_path, capsys):
    assert cli.main(["data", "--data", str(mnist_dir)]) == 0
    assert "2000 training and 1000 test images" in capsys.readouterr().out
    assert cli.main(["data", "--data", str(tmp_path), "--no-download"]) == 2
    assert "MNIST files missing" in capsys.readouterr().err


def test_models_command(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "814090 dense" in out and "274433 dense" in out


def _subparser(name):
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _config_fields():
    from dataclasses import fields

    from zotrain.pinn import bodies
    from zotrain.pinn.config import PinnConfig
    from zotrain.recipes.classification import ClassifierConfig, ModelOptions

    return [("train", f) for f in fields(ClassifierConfig) + fields(ModelOptions)] + \
        [("pinn", f) for f in fields(PinnConfig) + fields(bodies.GaussNewton) if f.metadata]


@pytest.mark.parametrize("command,field", _config_fields(), ids=lambda v: getattr(v, "name", v))
def test_every_config_field_is_a_flag_with_its_help_defined_once(command, field):
    """The commands' options are generated from the config fields: each field has its flag,
    in its group, with the field's help and default; cli.py defines none of them by hand."""
    meta = field.metadata
    flag = meta["flag"] or meta["negate"] or "--" + field.name.replace("_", "-")
    parser = _subparser(command)
    action = next(a for a in parser._actions if flag in a.option_strings)
    assert action.dest == field.name and action.help.startswith(meta["help"])
    group = next(g for g in parser._action_groups if action in g._group_actions)
    assert group.title == meta["group"]
    source = open(cli.__file__).read()
    assert not re.search(r'add_argument\(\s*"' + flag + '"', source)


def test_help_is_grouped_and_each_group_fits_a_screen(capsys):
    for command in ("train", "pinn"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        groups = re.split(r"\n(?=\S[^\n]*:\n)", out)[1:]
        titles = [g.split(":\n")[0] for g in groups]
        assert {"model", "budgets and stopping", "output", "backend and scale-out"} <= set(titles)
        assert all(len(g.splitlines()) <= 50 for g in groups), titles


@pytest.mark.parametrize("command,old,new,dest,value", [
    (["train", "mnist"], "--time-limit", "--max-time", "time_limit_s", 5.0),
    (["train", "mnist"], "--hidden", "--width", "hidden", 64),
    (["pinn", "hjb20d"], "--time-limit", "--max-time", "max_time_s", 5.0)])
def test_old_flags_still_work_and_name_their_replacement(capsys, command, old, new, dest, value):
    args = cli.build_parser().parse_args(command + [old, str(value)])
    assert getattr(args, dest) == value
    assert f"{old} is now {new}" in capsys.readouterr().err
    args = cli.build_parser().parse_args(command + [new, str(value)])
    assert getattr(args, dest) == value and capsys.readouterr().err == ""
