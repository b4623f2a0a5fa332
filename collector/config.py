"""The collector's configuration model (collector.toml). The reference document is generated from it."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from puewatch import config as cfg
from puewatch.collector.ingest import IngestConfig
from puewatch.collector.pipeline import parse_duration
from puewatch.core.timefmt import SECOND
from puewatch.core.site import Meter, SiteModel, Zone, timezone_setting
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.config import setting
from puewatch.errors import ConfigError
from puewatch.redact import redact_url, register_secret


# The least settle_s where [collector] leaves it unset (see CollectorConfig.settle_s).
DEFAULT_SETTLE_S = 10.0


@dataclass
class CollectorSection:
    """The site and the live pipeline."""

    site: str = setting(min=1, doc="Site name, the `site` tag of every derived point.")
    timezone: str = timezone_setting()
    interval_s: float = setting(1.0, min=0.1, max=60.0, doc="Pipeline cell length; must divide one minute.")
    windows: list[str] = setting(
        default_factory=lambda: ["1m", "15m", "1h", "24h", "30d"],
        min=1,
        doc="Rolling windows for PUE and the other ratios (`s`, `m`, `h`, `d`, `w`). Windows up to 2 h run on the "
        "cell grid, longer ones on one-minute cells.",
    )
    min_coverage: float = setting(
        0.9, min=0.0, max=1.0, doc="A ratio whose window has less data than this share is not reported (NaN)."
    )
    settle_s: float | None = setting(
        None,
        min=1.0,
        max=3600.0,
        doc="How long the pipeline waits for late readings; a stream silent for longer stops holding it back and "
        "its cells count as missing. Unset: the slowest meter device's interval_s + timeout_s x (retries + 1), and "
        "at least 10 s. Set shorter than that, the config is refused (that device's readings would come after "
        "their cells were written).",
    )
    state_dir: str = setting("/var/lib/puewatch/collector", min=1, doc="Spool and rolling-window checkpoint.")
    checkpoint_interval_s: float = setting(60.0, min=1.0, max=3600.0, doc="How often the rolling history is checkpointed.")
    gpu_max_power_w: float = setting(
        2000.0, min=1.0, doc="Largest power one GPU can draw; a faster-growing energy counter is an impossible jump."
    )
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="Log level (stderr).")

    def check(self) -> list[tuple[str, str]]:
        out = []
        interval_ns = round(self.interval_s * SECOND)
        if (60 * SECOND) % interval_ns:
            out.append(("interval_s", f"must divide one minute (e.g. 0.5, 1, 5, 10, 15, 30), got {self.interval_s}"))
        for w in self.windows:
            try:
                ns = parse_duration(w)
            except ValueError as exc:
                out.append(("windows", str(exc)))
                continue
            res = interval_ns if ns <= 2 * 3600 * SECOND else 60 * SECOND
            if ns % res or ns < interval_ns:
                out.append(("windows", f"{w!r} is not a whole number of {res // SECOND} s cells"))
        return out

    def windows_ns(self) -> list[int]:
        return [parse_duration(w) for w in self.windows]


@dataclass
class EmbeddedStore:
    """The embedded SQLite store (one file; for demos and small sites)."""

    path: str = setting("", doc="Database file; empty means `<state_dir>/puewatch.sqlite`.")
    raw_retention_days: float = setting(400.0, min=1.0, doc="Days of points kept (at least a year for annual PUE). Decided at ingest: an older line is refused with 400, not stored and deleted.")
    compact_after_days: float = setting(
        2.0, min=0.0, min_exclusive=True,
        doc="Points older than this move from rows into columnar chunks at the hourly upkeep (fast year-long "
        "reports); a late point for that time still wins. Smaller keeps fewer rows, larger rewrites fewer chunks.",
    )


@dataclass
class Influx2Store:
    """InfluxDB v2 write API (InfluxDB 2.x, 3.x, 1.8+, VictoriaMetrics: graphs only, see collector/README.md, "Stores")."""

    url: str = setting(min=1, doc="Base URL, e.g. `http://influxdb:8086`.")
    bucket: str = setting(min=1, doc="Bucket (InfluxDB 1.8: `database/retention-policy`).")
    org: str = setting("", doc="Organisation.")
    token: str = setting("", secret=True, doc="API token; prefer `token_file`.")
    token_file: str = setting("", doc="File holding the API token (first line), e.g. a systemd credential.")
    ca_file: str = setting("", doc="CA bundle for TLS; empty means the system CAs.")
    timeout_s: float = setting(10.0, min=0.5, max=300.0, doc="Timeout of one write.")
    gzip: bool = setting(True, doc="Compress writes.")

    def check(self) -> list[tuple[str, str]]:
        return _check_url(self.url) + _check_secret(self.token, self.token_file, "token")


@dataclass
class Influx1Store:
    """InfluxDB v1 API (`/write`, `/query`): InfluxDB 1.x, or the v1 compatibility API of 2.x/3.x."""

    url: str = setting(min=1, doc="Base URL, e.g. `http://influxdb:8086`.")
    database: str = setting(min=1, doc="Database (create it with `puewatch influx setup`).")
    retention_policy: str = setting("", doc="Retention policy to write into; empty means the database's default.")
    user: str = setting("", doc="User; empty when authentication is off.")
    password: str = setting("", secret=True, doc="Password; prefer `password_file`.")
    password_file: str = setting("", doc="File holding the password (first line).")
    timeout_s: float = setting(10.0, min=0.5, max=300.0, doc="Timeout of one write.")
    gzip: bool = setting(True, doc="Compress writes.")

    def check(self) -> list[tuple[str, str]]:
        return _check_url(self.url) + _check_secret(self.password, self.password_file, "password")


@dataclass
class StoreSection:
    """Where raw and derived series go. Exactly one of the tables below; embedded when none is given."""

    embedded: EmbeddedStore | None = setting(None, doc="The embedded SQLite store (the default).")
    influx2: Influx2Store | None = setting(None, doc="InfluxDB v2 write API.")
    influx1: Influx1Store | None = setting(None, doc="InfluxDB v1 API.")
    spool_max_bytes: int = setting(
        1024 * 1024 * 1024, min=1024 * 1024, doc="Most bytes each on-disk spool may hold while the store is down or slow. The raw "
        "lines' spool (acknowledged data) then answers ingest 503 with Retry-After for what does not fit; the derived "
        "series' spool drops its oldest batches first, counted.",
    )

    def check(self) -> list[tuple[str, str]]:
        given = [name for name in ("embedded", "influx2", "influx1") if getattr(self, name) is not None]
        if len(given) > 1:
            return [(given[1], f"give one store, not {' and '.join(given)}")]
        return []

    @property
    def kind(self) -> str:
        for name in ("influx2", "influx1"):
            if getattr(self, name) is not None:
                return name
        return "embedded"


@dataclass
class SnmpSection:
    """Facility meters polled over SNMP."""

    devices: list[SnmpDevice] = setting(default_factory=list, doc="One `[[snmp.devices]]` table per device.")
    profile_dirs: list[str] = setting(
        default_factory=list,
        doc="Directories of extra meter profiles (`*.toml`, as `puewatch snmp probe --profile-dir` reads them), "
        "loaded beside the shipped ones; e.g. `[\"/etc/puewatch/profiles\"]`.",
    )

    def check(self) -> list[tuple[str, str]]:
        for d in self.profile_dirs:
            if not Path(d).is_dir():
                return [("profile_dirs", f"{d!r} is not a directory")]
        dup = cfg.duplicate([d.name for d in self.devices])
        return [("devices", f"device name {dup!r} is used twice")] if dup else []

    def names(self) -> set[str]:
        return {d.name for d in self.devices}


@dataclass
class MetricsSection:
    """Prometheus `/metrics` on its own port."""

    listen: str = setting("127.0.0.1:9464", doc="Address and port; empty turns the endpoint off.")

    def check(self) -> list[tuple[str, str]]:
        if self.listen:
            host, sep, port = self.listen.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                return [("listen", f"expected HOST:PORT, got {self.listen!r}")]
        return []

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


@dataclass
class CollectorConfig:
    """collector.toml"""

    collector: CollectorSection = setting(doc="The site and the live pipeline.")
    meters: dict[str, Meter] = setting(doc="Facility meters by name: role, zone and where the readings come from.")
    zones: dict[str, Zone] = setting(default_factory=dict, doc="Zones (halls) and their agents' nodes.")
    ingest: IngestConfig = setting(default_factory=IngestConfig, doc="The InfluxDB-compatible write endpoint for agents.")
    snmp: SnmpSection = setting(default_factory=SnmpSection, doc="SNMP devices.")
    store: StoreSection = setting(default_factory=StoreSection, doc="Where the series are written.")
    metrics: MetricsSection = setting(default_factory=MetricsSection, doc="Prometheus endpoint.")

    def check(self) -> list[tuple[str, str]]:
        out = []
        for name, meter in self.meters.items():
            if meter.device and (not name or name != name.strip() or not name.isprintable()):
                # A meter's name is a tag of its derived series: a newline stopped the collector at its first write
                # (found by the metrics audit; an ingest meter's name was checked, an SNMP meter's not).
                out.append((f"meters.{name}", "a meter's name is a tag of its series: it cannot be empty, hold a "
                            "control or unprintable character, or begin or end with a space"))
            if name.startswith("gpu:"):
                # /metrics names the agents' GPU streams gpu:NODE:UUID in the same label (a meter so named gave
                # duplicate series: found by the metrics audit).
                out.append((f"meters.{name}", "a meter's name cannot begin with 'gpu:' (the agents' GPU streams' names)"))
            if not meter.device and (set(name) & {",", "="} or any(c.isspace() or not c.isprintable() for c in name)):
                # A feeder's token names it (feeder:NAME,...): a comma or a space cuts the name there, so no token
                # could ever feed it (found by the config audit).
                out.append((f"meters.{name}", "an ingest meter's name is written in its feeder's token scope "
                            "(feeder:NAME,...): it cannot hold a comma, '=', a space or a control character"))
            if meter.device and meter.device not in self.snmp.names():
                known = ", ".join(sorted(self.snmp.names())) or "none"
                out.append((f"meters.{name}.device", f"no SNMP device {meter.device!r} in [[snmp.devices]] (known: {known})"))
        if self.snmp.devices:
            out += self._profile_problems()
        settle = self.collector.settle_s
        for name, worst in self._device_waits().items():
            if settle is not None and worst > settle:
                # The horizon lags the clock by settle_s at most: a meter's next reading that comes later than
                # that finds its cells written, counted missing (found by the config audit: not flagged).
                out.append(("collector.settle_s", f"{settle:g} s is shorter than device {name!r}'s interval_s + "
                            f"timeout_s x (retries + 1) = {worst:g} s: its readings would come after their cells "
                            "were written, and its energy there would count as missing; make settle_s at least that, "
                            "or leave it unset"))
        out += [(key, msg) for key, msg in self.site_model().problems()]
        return out

    def _device_waits(self) -> dict[str, float]:
        """The longest a meter device's next reading may come after its last: interval_s + timeout_s x (retries + 1)."""
        used = {m.device for m in self.meters.values() if m.device}
        return {d.name: d.interval_s + d.timeout_s * (d.retries + 1) for d in self.snmp.devices if d.name in used}

    def settle_s(self) -> float:
        """[collector] settle_s, or where unset the slowest meter device's wait (see _device_waits), at least 10 s:
        the one rule the pipeline takes."""
        if self.collector.settle_s is not None:
            return self.collector.settle_s
        return max([DEFAULT_SETTLE_S, *self._device_waits().values()])

    def _profile_problems(self) -> list[tuple[str, str]]:
        """The SNMP profiles as the poller will load them, checked here, at load time: a broken profile file, a
        device naming a profile there is not, a meter's `reading` or `location` its device's profile has not.
        Checked only where a meter had a `location`, `--check-config` passed them and the collector then
        stopped at start-up (a meter's unknown `reading` got no data, silently; found by the config audit)."""
        from puewatch.collector.snmp import profiles as pf

        if any(not Path(d).is_dir() for d in self.snmp.profile_dirs):
            return []  # said by [snmp]'s own check
        try:
            profiles = pf.load_profiles(self.snmp.profile_dirs)
        except ConfigError as exc:
            return [("snmp.profile_dirs", str(exc))]
        out = []
        for d in self.snmp.devices:
            if d.profile and d.profile not in profiles:
                where = "the built-in profiles" + (f" and {', '.join(self.snmp.profile_dirs)}" if self.snmp.profile_dirs
                                                   else "")
                out.append(("snmp.devices", f"device {d.name!r}: profile {d.profile!r} is not in {where}; profiles: "
                                            f"{', '.join(sorted(profiles))}"))
        return out + pf.resolve_meter_locations(self.meters, self.snmp.devices, profiles)[1]

    def resolve_locations(self):
        """The profiles the poller uses (with the totals meters' `location` selectors add) and the
        selectors' problems; sets each such meter's `reading` (`profiles.resolve_meter_locations`)."""
        from puewatch.collector.snmp import profiles as pf

        return pf.resolve_meter_locations(self.meters, self.snmp.devices, pf.load_profiles(self.snmp.profile_dirs))

    def site_model(self) -> SiteModel:
        return SiteModel(self.collector.site, self.meters, self.zones, timezone=self.collector.timezone)


def _check_url(url: str) -> list[tuple[str, str]]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [("url", f"must be an http:// or https:// URL with a host, got {redact_url(url)!r}")]
    return []


def _check_secret(value: str, file: str, name: str) -> list[tuple[str, str]]:
    if value and file:
        return [(f"{name}_file", f"set either {name} or {name}_file, not both")]
    return []


def read_secret(value: str, file: str, what: str) -> str:
    """The secret itself, or the first line of its file."""
    if value or not file:
        register_secret(value)
        return value
    try:
        secret = Path(file).read_text(encoding="utf-8").splitlines()[0].strip()
        register_secret(secret)
        return secret
    except UnicodeDecodeError as exc:
        # Never the bytes themselves: they are a secret, or part of one.
        raise ConfigError(f"{what}: cannot read {file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, IndexError) as exc:
        raise ConfigError(f"{what}: cannot read {file}: {getattr(exc, 'strerror', None) or 'empty file'}") from None


def named_files(conf: CollectorConfig) -> list:
    """The files the configuration names (tokens, passwords, TLS), for `--check-config` (puewatch/configcheck.py):
    all of them, so a missing one is found before the collector starts, not one at a time as it starts."""
    from puewatch.configcheck import NamedFile, credential_dir

    out = [NamedFile("collector.state_dir", conf.collector.state_dir, "the spools and checkpoints",
                     "create it for the collector's user, or let systemd's StateDirectory= make it", directory=True)]
    ing = conf.ingest
    token_how = ('one "NAME TOKEN" line per agent or feeder, mode 0600, e.g. '
                 '`echo "gpu-node-01 $(openssl rand -hex 24)" >> FILE` (collector/README.md)')
    if ing.token_file:
        out.append(NamedFile("ingest.token_file", ing.token_file, "the writers' tokens", token_how))
    if ing.token_credential:
        where = credential_dir()
        if where:
            out.append(NamedFile("ingest.token_credential", str(Path(where) / ing.token_credential),
                                 "the writers' tokens, a systemd credential", token_how))
        else:
            out.append(NamedFile("ingest.token_credential", f"$CREDENTIALS_DIRECTORY/{ing.token_credential}",
                                 "the writers' tokens, a systemd credential: $CREDENTIALS_DIRECTORY is set only under "
                                 "systemd", f"create the file LoadCredential={ing.token_credential}:FILE names; {token_how}"))
    if ing.tls_cert:
        out.append(NamedFile("ingest.tls_cert", ing.tls_cert, "the HTTPS certificate chain, PEM",
                             "e.g. `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 "
                             "-subj /CN=$(hostname -f) -keyout KEY -out CERT`, or your CA's"))
    if ing.tls_key:
        out.append(NamedFile("ingest.tls_key", ing.tls_key, "the HTTPS private key, PEM", "made with tls_cert (mode 0600)"))
    s1, s2 = conf.store.influx1, conf.store.influx2
    if s1 is not None and s1.password_file:
        out.append(NamedFile("store.influx1.password_file", s1.password_file, "the InfluxDB user's password, first line",
                             "write the password of store.influx1.user in it (mode 0600), or for systemd "
                             "LoadCredential=influx-password:FILE (systemd/README.md)"))
    if s2 is not None and s2.token_file:
        out.append(NamedFile("store.influx2.token_file", s2.token_file, "the InfluxDB API token, first line",
                             "e.g. `influx auth create --write-bucket ID` and write the token in it (mode 0600)"))
    if s2 is not None and s2.ca_file:
        out.append(NamedFile("store.influx2.ca_file", s2.ca_file, "the CA bundle of InfluxDB's certificate",
                             "copy the CA certificate (PEM) there, or remove the key to use the system CAs"))
    return out


def load(path: str | Path) -> CollectorConfig:
    return cfg.load(path, CollectorConfig)


if __name__ == "__main__":  # pragma: no cover - regenerates collector/CONFIG.md
    print(cfg.reference_markdown(CollectorConfig, "Collector configuration reference (collector.toml)"))
