"""Targets a report is checked against: a TOML file, a built-in preset, or a preset with overrides.

A targets file is validated like every puewatch config (unknown keys are
errors; errors name the file and the key). Every rule is optional; a file sets
at least one rule or a preset:

    preset = "miit-2021"          # start from a built-in preset (see PRESETS)
    name = "Our city, 2025"       # shown in outputs
    min_completeness = 0.95       # add a rule
    max_annual_pue = 1.28         # override the preset's limit

Comparisons. A source that says "PUE < 1.3" is met by 1.29 but not by 1.30;
one that says "≤ 1.25" is met by 1.25. `pue_comparison` ("<" or "<=") says
which applies to the PUE limits (`max_annual_pue`, `max_pue`,
`max_monthly_pue`, `max_city_pue`); each preset sets it as its source words
it, and a file that overrides a preset's limit keeps the preset's comparison
unless it sets its own. Without a preset the default is "<=". The other rules
are inclusive: completeness, category, REF and green share at least, uncertainty at most.

`pue_basis` says which of the report's PUEs those limits look at: `pue` (the
default: E_DC / E_IT over the whole period, each meter's energy as it has it)
or `pue_joint` (both energies over the time every PUE meter was observed, which
one meter's gap cannot bias; see docs/report-schema.md). They are equal when
completeness is 1. `pue_basis = "pue_joint"` with `min_completeness` is the
stricter pair: the PUE is unbiased and the share of the period it rests on is
bounded. `max_uncertainty` then looks at `pue_joint_uncertainty`.

Built-in presets come only from targets confirmed in the project's domain
reference. Targets whose figures are unconfirmed there (GB 40879-2021's grade
thresholds) are deliberately not presets: write them in a targets file after
checking the standard's text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puewatch.config import build, load, setting
from puewatch.errors import UserError

COMPARISONS = ("<", "<=")
PUE_BASES = ("pue", "pue_joint")

# Rules evaluated per report, in the order they are shown.
REPORT_RULES = (
    "require_signature",
    "require_annual",
    "min_category",
    "min_completeness",
    "max_annual_pue",
    "max_pue",
    "max_monthly_pue",
    "max_uncertainty",
    "min_ref",
    "min_green_share",
)
# Rules evaluated over all the city's reports (by `puewatch city`, not `puewatch check`).
CITY_RULES = ("max_city_pue",)
RULES = REPORT_RULES + CITY_RULES


@dataclass(frozen=True)
class Preset:
    """A built-in set of rules taken from one published target.

    `instrument` and `year` name the source; `target` quotes what it asks, in
    the words of the project's domain reference; `note` says how the target is
    applied where the source is wider than one site's report (an average).
    """

    name: str
    instrument: str
    year: int
    target: str
    pue_comparison: str
    rules: dict[str, Any]
    note: str = ""

    @property
    def source(self) -> str:
        return f"{self.instrument} ({self.year}): {self.target}"


def _preset(name: str, instrument: str, year: int, target: str, comparison: str, note: str = "", **rules: Any) -> Preset:
    return Preset(name, instrument, year, target, comparison, rules, note)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            "miit-2021",
            "MIIT new data-centre development three-year action plan 2021-2023",
            2021,
            "new large data centres: PUE < 1.3 by end-2023",
            "<",
            max_annual_pue=1.3,
        ),
        _preset(
            "miit-2021-cold",
            "MIIT new data-centre development three-year action plan 2021-2023",
            2021,
            "new large data centres in cold regions: aim for PUE < 1.25",
            "<",
            max_annual_pue=1.25,
        ),
        _preset(
            "ndrc-2021",
            "NDRC plan for green, high-quality development of data centres and other new infrastructure",
            2021,
            "new large data centres: average PUE < 1.3 by 2025",
            "<",
            note="applied to each site's annual PUE (the PUE of a year is the average over it)",
            max_annual_pue=1.3,
        ),
        _preset(
            "ndrc-2021-hub",
            "NDRC plan for green, high-quality development of data centres and other new infrastructure",
            2021,
            "data centres in national hub nodes: PUE < 1.25 by 2025",
            "<",
            max_annual_pue=1.25,
        ),
        _preset(
            "east-cluster-2022",
            '"East data, west compute" national computing hub cluster approvals',
            2022,
            "eastern clusters: PUE ≤ 1.25",
            "<=",
            max_annual_pue=1.25,
        ),
        _preset(
            "west-cluster-2022",
            '"East data, west compute" national computing hub cluster approvals',
            2022,
            "western clusters (e.g. Qingyang): PUE ≤ 1.2",
            "<=",
            max_annual_pue=1.2,
        ),
        _preset(
            "beijing-2027",
            "Beijing data-centre energy-efficiency requirement",
            2027,
            "annual PUE ≤ 1.35 by 2027 (differential power tariff above 1.35 from 2026)",
            "<=",
            require_annual=True,
            max_annual_pue=1.35,
        ),
        _preset(
            "green-2024",
            "Data-centre green low-carbon development special action plan (July 2024)",
            2024,
            "national average PUE < 1.5 by end-2025",
            "<",
            note="an average over data centres: checked on the city's energy-weighted PUE (max_city_pue), "
            "not on each site",
            max_city_pue=1.5,
        ),
    )
}


def _preset_doc() -> str:
    return ", ".join(f"{p.name!r}" for p in PRESETS.values())


@dataclass
class TargetsFile:
    """A targets file: an optional built-in preset plus rules that add to or override it."""

    preset: str | None = setting(None, doc="start from this built-in preset; the rules below add to or override it",
                                 choices=tuple(PRESETS))
    name: str | None = setting(None, doc="a title for these targets, shown in outputs")
    pue_comparison: str | None = setting(
        None,
        doc='"<" when the source says "PUE < limit" (strict), "<=" when it says "≤" (the preset\'s, else "<=")',
        choices=COMPARISONS,
    )
    pue_basis: str | None = setting(
        None,
        doc='which report PUE the PUE limits and max_uncertainty look at: "pue" (E_DC / E_IT over the period; the '
        'default) or "pue_joint" (over the time every PUE meter was observed, unbiased by one meter\'s gap)',
        choices=PUE_BASES,
    )
    max_annual_pue: float | None = setting(None, doc="limit on the report's PUE; the report must be annual", min=1.0)
    max_pue: float | None = setting(None, doc="limit on the report's PUE, annual or interim (iPUE)", min=1.0)
    max_monthly_pue: float | None = setting(None, doc="limit on every entry of the report's monthly PUE", min=1.0)
    max_city_pue: float | None = setting(
        None, doc="limit on the city's energy-weighted PUE (`puewatch city` only)", min=1.0
    )
    min_completeness: float | None = setting(None, doc="least share of the period with every PUE meter's data", min=0.0, max=1.0)
    min_category: int | None = setting(None, doc="least measurement category (where IT energy is metered)", choices=(1, 2, 3))
    min_ref: float | None = setting(None, doc="least renewable energy factor (REF)", min=0.0, max=1.0)
    min_green_share: float | None = setting(
        None, doc="least green share of the facility energy (`green_share`: renewable meters, certificates and PPAs; "
        "the report made with --carbon)", min=0.0, max=1.0)
    max_uncertainty: float | None = setting(None, doc="largest absolute PUE uncertainty (`pue_uncertainty`)", min=0.0)
    require_annual: bool | None = setting(None, doc="the report must cover 12 whole months")
    require_signature: bool | None = setting(
        None, doc="the report must carry a valid signature from a key given with --pubkeys"
    )

    def check(self) -> list[tuple[str, str]]:
        if self.preset is None and all(getattr(self, r) is None for r in RULES):
            return [("preset", f"no preset and no rule: set preset (one of {_preset_doc()}) or at least one of "
                               + ", ".join(RULES))]
        return []


@dataclass(frozen=True)
class Targets:
    """The rules in force: a preset merged with a file's overrides. A rule that is None is not checked."""

    name: str
    sources: tuple[str, ...]
    pue_comparison: str = "<="
    pue_basis: str = "pue"
    max_annual_pue: float | None = None
    max_pue: float | None = None
    max_monthly_pue: float | None = None
    max_city_pue: float | None = None
    min_completeness: float | None = None
    min_category: int | None = None
    min_ref: float | None = None
    min_green_share: float | None = None
    max_uncertainty: float | None = None
    require_annual: bool | None = None
    require_signature: bool | None = None
    notes: tuple[str, ...] = field(default=())

    def report_rules(self) -> list[str]:
        """The per-report rules in force (a bool rule set to false is not in force)."""
        return [r for r in REPORT_RULES if getattr(self, r) not in (None, False)]

    def city_rules(self) -> list[str]:
        return [r for r in CITY_RULES if getattr(self, r) is not None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sources": list(self.sources), "pue_comparison": self.pue_comparison}
        if self.pue_basis != "pue":
            out["pue_basis"] = self.pue_basis
        out["rules"] = {r: getattr(self, r) for r in RULES if getattr(self, r) not in (None, False)}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def preset_targets(name: str) -> Targets:
    """The targets of a built-in preset; an unknown name is a one-line error listing the presets."""
    preset = PRESETS.get(name)
    if preset is None:
        raise UserError(f"unknown preset {name!r}; presets: {_preset_doc()}")
    return Targets(
        name=name,
        sources=(preset.source,),
        pue_comparison=preset.pue_comparison,
        notes=(preset.note,) if preset.note else (),
        **preset.rules,
    )


def _merge(tf: TargetsFile, origin: str) -> Targets:
    base = preset_targets(tf.preset) if tf.preset else Targets(name=Path(origin).stem, sources=())
    overrides = {r: getattr(tf, r) for r in RULES if getattr(tf, r) is not None}
    changes: dict[str, Any] = dict(overrides)
    if tf.pue_comparison is not None:
        changes["pue_comparison"] = tf.pue_comparison
    if tf.pue_basis is not None:
        changes["pue_basis"] = tf.pue_basis
    if tf.name is not None:
        changes["name"] = tf.name
    elif tf.preset:
        changes["name"] = f"{Path(origin).stem} (from {tf.preset})" if overrides else tf.preset
    if overrides or tf.pue_comparison is not None or tf.pue_basis is not None:
        changes["sources"] = (*base.sources, f"targets file {origin}")
    return dataclasses.replace(base, **changes)


def load_targets(path: str | Path) -> Targets:
    """Read a targets file (TOML); errors name the file and the key."""
    return _merge(load(path, TargetsFile), str(path))


def targets_from_dict(data: dict[str, Any], origin: str = "<targets>") -> Targets:
    """Targets from an already parsed table (tests, embedding in another config)."""
    return _merge(build(TargetsFile, data, origin), origin)


def resolve_targets(targets_path: str | None, preset: str | None) -> Targets:
    """The CLI's `--targets FILE | --preset NAME` (exactly one)."""
    if (targets_path is None) == (preset is None):
        raise UserError("give exactly one of --targets FILE or --preset NAME")
    if preset is not None:
        return preset_targets(preset)
    assert targets_path is not None
    return load_targets(targets_path)


__all__ = [
    "COMPARISONS", "CITY_RULES", "PRESETS", "PUE_BASES", "Preset", "REPORT_RULES", "RULES", "Targets",
    "TargetsFile", "load_targets", "preset_targets", "resolve_targets", "targets_from_dict",
]
