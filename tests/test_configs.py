"""Every committed recipe parses into a valid training config."""

from pathlib import Path

import pytest

from mozart.errors import MozartError
from mozart.models import SIZES
from mozart.train import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_parses(path):
    config = load_config(path)
    size = path.stem.split("-")[0]
    if size in SIZES:  # "<size>-<arch>[-...].toml" names say what they hold
        assert config.size == size and config.arch in path.stem


def test_overrides_beat_the_file_and_unknown_keys_fail(tmp_path):
    config = load_config(CONFIGS[0], max_steps=7)
    assert config.max_steps == 7
    bad = tmp_path / "bad.toml"
    bad.write_text("max_step = 3\n")
    with pytest.raises(MozartError, match="unknown settings max_step"):
        load_config(bad)
