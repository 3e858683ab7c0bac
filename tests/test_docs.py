"""The README explains the project on its own: every setting, every command, nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from astra.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CODE_DIRS = ("astra", "schemas", "sim", "models", "datasets", "viz", "pipelines", "operators", "dataflows")


def _settings_in_code() -> set[str]:
    names = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yml"):
                names |= set(re.findall(r"\bASTRA_[A-Z_]*[A-Z]\b", path.read_text()))
    return names


def test_every_environment_setting_is_documented() -> None:
    settings = _settings_in_code()
    assert {"ASTRA_WORLD", "ASTRA_EXPERT_HZ", "ASTRA_EPISODE_ACKS"} <= settings  # the scan finds them
    undocumented = {name for name in settings if f"`{name}`" not in README}
    assert not undocumented, f"README lacks {sorted(undocumented)}"


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps subcommands only here
    for name, sub in commands.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        full = [f"astra {name} {child}" for child in nested[0].choices] if nested else [f"astra {name}"]
        for command in full:
            assert command in README, f"README does not show `{command}`"


def test_the_readme_stands_alone() -> None:
    assert "../" not in README, "the README points outside the repository"
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        assert link.startswith("http") or (ROOT / link).exists(), f"broken link {link}"
