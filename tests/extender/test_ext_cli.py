"""CLI and settings: one pydantic-settings object, env prefix GPUTOPO_EXTENDER_, validated at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extender.cli import main
from extender.settings import load
from labeler.topology.errors import ConfigError


def test_check_config_merges_env_and_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GPUTOPO_EXTENDER_MODE", "stateless")
    monkeypatch.setenv("GPUTOPO_EXTENDER_STRATEGIES", "bandwidth,island")
    monkeypatch.setenv("GPUTOPO_EXTENDER_PORT", "9000")
    assert main(["--port", "9100", "--locality-key", "a.io/rack,b.io/zone", "--check-config"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "stateless" and out["port"] == 9100
    assert out["strategies"] == ["bandwidth", "island"] and out["locality_keys"] == ["a.io/rack", "b.io/zone"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--strategy", "bandwidth", "--strategy", "telepathy"],
        ["--strategy", "level"],  # the link-level table of the first objective is gone
        ["--prefix", "no-slash"],
        ["--port", "70000"],
        ["--max-body-bytes", "10"],
        ["--locality-key", "not a key!"],
    ],
)
def test_invalid_settings_fail_at_start_up(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--check-config"]) == 2
    assert "invalid extender settings" in capsys.readouterr().err


def test_unknown_env_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUTOPO_EXTENDER_MODE", "psychic")
    with pytest.raises(ConfigError, match="mode"):
        load()


def test_help_mentions_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--mode", "--prefix", "--strategy", "--max-body-bytes", "--kubeconfig"):
        assert flag in text


def test_cached_mode_without_cluster_config_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    """No --kubeconfig, no $KUBECONFIG, no ~/.kube/config, not in a pod: exit 2 in one line, as audit cluster."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["--mode", "cached"]) == 2
    err = capsys.readouterr().err
    assert "no Kubernetes API configuration" in err and "not in a cluster" in err and err.count("\n") == 1


def test_gputopo_extender_subcommand_reaches_our_main() -> None:
    """`python -m gputopo extender ...` (the lead's entry point) runs extender.cli.main."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "gputopo", "extender", "--mode", "stateless", "--check-config"],
                          capture_output=True, text=True, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "stateless"
