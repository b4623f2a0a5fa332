"""Targets files and the built-in presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from puewatch.city.targets import PRESETS, RULES, load_targets, preset_targets, resolve_targets
from puewatch.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[2]

# The targets the project's domain reference lists as confirmed (instrument -> limits it states).
# GB 40879-2021's grade thresholds are marked (unconfirmed) there and EU EED sets no cap: neither may be a preset.
CONFIRMED = {
    "MIIT": {1.3, 1.25},
    "NDRC": {1.3, 1.25},
    "East data, west compute": {1.25, 1.2},
    "green low-carbon": {1.5},
    "Beijing": {1.35},
}


def write(tmp_path: Path, text: str, name: str = "targets.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_file_with_rules(tmp_path):
    t = load_targets(write(tmp_path, """
name = "Our city 2025"
max_annual_pue = 1.3
max_monthly_pue = 1.45
min_completeness = 0.95
min_category = 2
min_ref = 0.1
max_uncertainty = 0.05
require_annual = true
require_signature = true
"""))
    assert t.name == "Our city 2025"
    assert t.pue_comparison == "<="  # no preset: inclusive by default
    assert (t.max_annual_pue, t.max_monthly_pue, t.min_completeness) == (1.3, 1.45, 0.95)
    assert (t.min_category, t.min_ref, t.max_uncertainty) == (2, 0.1, 0.05)
    assert t.require_annual is True and t.require_signature is True
    assert t.report_rules() == ["require_signature", "require_annual", "min_category", "min_completeness",
                                "max_annual_pue", "max_monthly_pue", "max_uncertainty", "min_ref"]
    assert any("targets.toml" in s for s in t.sources)


def test_preset_with_overrides_keeps_the_preset_comparison(tmp_path):
    t = load_targets(write(tmp_path, 'preset = "miit-2021"\nmax_annual_pue = 1.28\nmin_completeness = 0.9\n'))
    assert t.max_annual_pue == 1.28
    assert t.min_completeness == 0.9
    assert t.pue_comparison == "<"  # MIIT says "< 1.3"
    assert t.sources[0] == PRESETS["miit-2021"].source
    assert len(t.sources) == 2 and "targets.toml" in t.sources[1]


def test_override_the_comparison_and_switch_off_a_preset_rule(tmp_path):
    t = load_targets(write(tmp_path, 'preset = "beijing-2027"\npue_comparison = "<"\nrequire_annual = false\n'))
    assert t.pue_comparison == "<"
    assert t.max_annual_pue == 1.35
    assert "require_annual" not in t.report_rules()


def test_preset_alone_in_a_file_is_the_preset(tmp_path):
    t = load_targets(write(tmp_path, 'preset = "west-cluster-2022"\n'))
    assert t == preset_targets("west-cluster-2022")


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("max_anual_pue = 1.3\n", "max_anual_pue", "unknown key"),
        ('max_annual_pue = "1.3"\n', "max_annual_pue", "must be a number"),
        ("max_annual_pue = 0.9\n", "max_annual_pue", "at least 1.0"),
        ("min_completeness = 1.5\n", "min_completeness", "at most 1.0"),
        ("min_category = 4\n", "min_category", "must be one of 1, 2, 3"),
        ('preset = "gb-40879"\n', "preset", "must be one of 'miit-2021'"),
        ('pue_comparison = "=="\nmax_pue = 1.3\n', "pue_comparison", "must be one of '<', '<='"),
        ("require_annual = 1\n", "require_annual", "must be a boolean"),
        ('name = "x"\n', "preset", "no preset and no rule"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert words in message
    assert "\n" not in message


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_targets(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_targets(write(tmp_path, "max_pue = \n"))


def test_exactly_one_of_file_or_preset(tmp_path):
    with pytest.raises(UserError, match="exactly one"):
        resolve_targets(None, None)
    with pytest.raises(UserError, match="exactly one"):
        resolve_targets(str(write(tmp_path, "max_pue = 1.3\n")), "miit-2021")
    with pytest.raises(UserError, match="unknown preset 'gb-40879'"):
        resolve_targets(None, "gb-40879")


def test_every_preset_cites_a_confirmed_source():
    assert PRESETS
    for name, p in PRESETS.items():
        assert p.name == name
        # instrument name and year, in the source text every output shows
        assert p.instrument and p.instrument in p.source
        assert 2015 <= p.year <= 2030 and str(p.year) in p.source
        matches = [k for k in CONFIRMED if k in p.instrument]
        assert len(matches) == 1, f"{name}: {p.instrument!r} is not one of the confirmed instruments"
        limits = {v for k, v in p.rules.items() if k.startswith("max_") and k.endswith("pue")}
        assert limits and limits <= CONFIRMED[matches[0]], (name, limits)
        # the comparison follows the source's words: "<" is strict, "≤" is not
        assert p.pue_comparison == ("<" if "< " in p.target else "<=")
        assert ("≤" in p.target) == (p.pue_comparison == "<=")
        assert set(p.rules) <= set(RULES)


def test_no_preset_from_an_unconfirmed_or_uncapped_row():
    for p in PRESETS.values():
        text = f"{p.name} {p.source} {p.note}".lower()
        assert not re.search(r"gb\s*/?t?\s*40879", text)
        assert "eed" not in text.split() and "2023/1791" not in text
    # GB 40879's unconfirmed grade thresholds 1.20/1.30/1.50 never appear as a three-grade preset family
    assert not any("grade" in p.target.lower() for p in PRESETS.values())


def test_the_guide_lists_every_preset_with_its_source():
    guide = (REPO / "docs" / "city-guide.md").read_text(encoding="utf-8")
    for p in PRESETS.values():
        assert f"`{p.name}`" in guide
        assert p.instrument in guide


def test_the_guide_holds_the_generated_targets_reference():
    """The guide's targets-file table is generated from the model: it cannot drift from the code."""
    from puewatch.city.targets import TargetsFile
    from puewatch.config import reference_markdown

    generated = reference_markdown(TargetsFile, "targets")
    table = generated[generated.index("| key"):].strip()
    guide = (REPO / "docs" / "city-guide.md").read_text(encoding="utf-8")
    assert table in guide
