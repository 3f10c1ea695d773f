"""The bundle folder follows the home, wherever the home is set, unless it is named."""

from __future__ import annotations

from pathlib import Path

from freshet.settings import Settings


def test_bundle_dir_follows_a_home_from_the_environment(tmp_path: Path) -> None:
    s = Settings.from_env({"FRESHET_HOME": str(tmp_path)})
    assert s.home == tmp_path and s.bundle_dir == tmp_path / "bundles"


def test_bundle_dir_follows_a_home_given_as_an_override(tmp_path: Path) -> None:
    """A test's or a bench's private home must not read the user's default bundles."""
    s = Settings.from_env({}, home=tmp_path)
    assert s.bundle_dir == tmp_path / "bundles"
    s = Settings.from_env({"FRESHET_HOME": "/elsewhere"}, home=tmp_path)
    assert s.bundle_dir == tmp_path / "bundles"


def test_a_named_bundle_dir_wins_over_the_home(tmp_path: Path) -> None:
    named = tmp_path / "models"
    env = {"FRESHET_HOME": str(tmp_path / "h"), "FRESHET_BUNDLE_DIR": str(named)}
    assert Settings.from_env(env).bundle_dir == named
    assert Settings.from_env(env, home=tmp_path / "other").bundle_dir == named
    assert Settings.from_env({}, home=tmp_path, bundle_dir=named).bundle_dir == named
