"""The CLI: development commands come from the workspace packages' entry points, never from an import."""

from __future__ import annotations

import pytest

from amlops import cli

pytestmark = pytest.mark.unit


def test_the_development_install_registers_the_emulator_and_the_demo() -> None:
    """`uv sync` installs amlops-emulator and amlops-testbed; each adds its command through `amlops.commands`."""
    assert {ep.name for ep in cli._plugins()} == {"demo", "emulator"}
    assert cli.local_only_refusal(["emulator"]) is None
    assert cli.local_only_refusal(["demo", "--exit"]) is None


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        pytest.param(["run"], False, id="the operator's own command is never refused"),
        pytest.param([], False, id="no command: argparse says what is missing"),
        pytest.param(["emulator"], True, id="emulator without its package"),
        pytest.param(["demo"], True, id="demo without its package"),
    ],
)
def test_refusal_when_the_packages_are_absent(monkeypatch: pytest.MonkeyPatch, argv: list[str], refused: bool) -> None:
    """As in the image: no entry point in the group (the image test checks the real image)."""
    monkeypatch.setattr(cli, "_plugins", list)
    refusal = cli.local_only_refusal(argv)
    assert (refusal is not None) is refused
    if refusal:
        assert refusal.startswith(f"amlops {argv[0]}: not available in this installation")


def test_help_lists_the_development_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    usage = capsys.readouterr().out
    assert "emulator" in usage
    assert "demo" in usage
