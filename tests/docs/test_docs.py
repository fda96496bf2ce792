"""Documentation stays true: every setting is in the README's configuration table."""

from __future__ import annotations

from pathlib import Path

from api.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [name for name in Settings.model_fields if f"`FAQLOOP_{name.upper()}`" not in README]
    assert missing == []


def test_every_setting_has_help_text() -> None:
    assert all(field.description for field in Settings.model_fields.values())
