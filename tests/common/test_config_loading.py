"""The one config loader: YAML + dotted overrides + flags generated from fields, errors naming the field."""

import argparse
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from common.config_loading import add_config_flags, flag_values, load_config
from common.errors import ConfigError, ErvGrpoError, error_line


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(1, ge=1, description="how many")


class _Demo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="what it is called")
    folder: Path | None = Field(None, description="where it lives")
    rate: float = Field(0.5, gt=0, description="how fast")
    mode: Literal["a", "b"] = Field("a", description="which way")
    on: bool = Field(True, description="whether it runs")
    inner: _Inner = Field(default_factory=_Inner, description="a section")


def test_file_then_overrides_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nrate: 2\ninner:\n  size: 3\n")
    config = load_config(_Demo, path, ["inner.size=4", "rate=3"], {"rate": 5.0, "folder": None})
    assert (config.name, config.rate, config.inner.size, config.folder) == ("x", 5.0, 4, None)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["inner.size=0"], r"c.yaml: inner.size: Input should be greater than or equal to 1"),
        (["bogus=1"], r"c.yaml: bogus: Extra inputs are not permitted"),
        (["rate"], r"is not of the form key.path=value"),
        (["name.x=1"], r"name is not a section"),
    ],
)
def test_errors_name_file_and_field(tmp_path, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=message):
        load_config(_Demo, path, overrides)


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="config file .*none.yaml does not exist"):
        load_config(_Demo, tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a mapping of _Demo fields"):
        load_config(_Demo, tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(_Demo, tmp_path / "bad.yaml")


def test_flags_come_from_fields_with_their_descriptions():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Demo, exclude=("inner",))
    text = parser.format_help()
    for snippet in ("--name NAME", "what it is called (required)", "--folder FOLDER", "how fast (default 0.5)",
                    "--mode {a,b}", "--on, --no-on"):  # fmt: skip
        assert snippet in text, snippet
    args = parser.parse_args(["--name", "n", "--no-on", "--folder", "f"])
    assert flag_values(args, _Demo) == {"name": "n", "on": False, "folder": Path("f")}  # unset flags left out
    assert load_config(_Demo, flags=flag_values(args, _Demo)).rate == 0.5


def test_the_cli_line():
    err = ConfigError("x.yaml: rate: bad")
    assert isinstance(err, ErvGrpoError) and error_line(err) == "erv-grpo: error: x.yaml: rate: bad"
