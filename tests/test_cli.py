"""The CLI's edge: `name=value` options parsed in one place; importing it changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from productgen.cli import UserError, gate_config, name_values


def test_name_values_parse_and_name_the_option() -> None:
    assert name_values(["batch_size=128", " lr_g = 0.001 "], "--set") == {
        "batch_size": "128",
        "lr_g": "0.001",
    }
    assert name_values(None, "--set") == {}
    with pytest.raises(UserError, match=r"--set 'batch_size': write it as name=value"):
        name_values(["batch_size"], "--set")
    with pytest.raises(UserError, match="--gate '=1'"):
        name_values(["=1"], "--gate")


def test_gate_options_build_the_gate_config() -> None:
    gate = gate_config(["tolerance=0.02", "min.color_accuracy=0.9"])
    assert gate.tolerance == 0.02 and gate.minimum == {"color_accuracy": 0.9}
    with pytest.raises(UserError, match=r"use tolerance, fid_tolerance or min\.METRIC"):
        gate_config(["speed=1"])
    with pytest.raises(UserError, match="must be a number"):
        gate_config(["tolerance=high"])


def test_importing_the_cli_sets_no_environment_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    code = "import os, productgen.cli; print(os.environ.get('HF_HUB_OFFLINE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "None", out.stderr
