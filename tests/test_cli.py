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
