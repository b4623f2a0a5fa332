"""The agent's configuration model (agent.toml). The reference document is generated from it."""

from __future__ import annotations

import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from puewatch import config as cfg
from puewatch.agent.sources import host, jobs, nvml, sim
from puewatch.config import setting
from puewatch.errors import ConfigError
from puewatch.redact import redact_url, register_secret


@dataclass
class AgentSection:
    """The agent itself: identity, spool, batching, self-monitoring."""

    node: str = setting("", doc="Node name, the `node` tag of every point; empty means the host name.")
    tags: dict[str, str] = setting(default_factory=dict, doc="Extra tags on every point, e.g. `{ site = \"fra1\", rack = \"r12\" }`.")
    spool_dir: str = setting("/var/lib/puewatch/agent/spool", min=1, doc="Directory of the on-disk spool (batches not yet acknowledged).")
    spool_max_bytes: int = setting(
        256 * 1024 * 1024, min=64 * 1024, doc="Most bytes the spool may hold; when full, the oldest batches are dropped and counted."
    )
    flush_interval_s: float = setting(5.0, min=0.1, max=3600.0, doc="How often the current batch is sealed and sent.")
    batch_max_bytes: int = setting(
        1024 * 1024, min=1024, max=64 * 1024 * 1024, doc="A batch is sealed early when it reaches this size."
    )
    self_interval_s: float = setting(10.0, min=0.5, max=3600.0, doc="Period of the agent's own `puewatch_agent` points.")
    status_interval_s: float = setting(5.0, min=0.5, max=3600.0, doc="Period of systemd STATUS= updates.")
    shutdown_timeout_s: float = setting(5.0, min=0.0, max=600.0, doc="On SIGTERM, how long the final flush may try to send.")
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="Log level (stderr).")

    def check(self) -> list[tuple[str, str]]:
        from puewatch.core.schema import AGENT_TAG_KEYS
        from puewatch.lineprotocol import LineProtocolError, series_key

        # Checked as the lines will write them: `tags = { time = "t" }` passed --check-config, then the
        # agent died at its first line with a traceback (found by the operator audit).
        for key, value in self.tags.items():
            if key in AGENT_TAG_KEYS:
                return [(f"tags.{key}", f"is a tag the agent sets itself ({', '.join(sorted(AGENT_TAG_KEYS))}): "
                                        "choose another key" + (" (the node's name is `agent.node`)" if key == "node" else ""))]
            if value == "":
                return [(f"tags.{key}", "is empty: a line protocol tag needs a value")]
            try:
                series_key("m", {key: value})
            except LineProtocolError as exc:
                return [(f"tags.{key}", str(exc))]
        return []


@dataclass
class OutputSection:
    """Where the points go: an InfluxDB-compatible write endpoint (InfluxDB v2 API by default)."""

    url: str = setting(doc="Write endpoint, e.g. `https://collector.example:8087/api/v2/write` (the collector listens on 8087 by default).", min=1)
    bucket: str = setting("puewatch", min=1, doc="Bucket (InfluxDB v2 `bucket=`, sent as the query parameter).")
    org: str = setting("", doc="Organisation (InfluxDB v2 `org=`); empty leaves it out.")
    precision: str = setting("ns", choices=("ns",), doc="Timestamp precision; the agent always writes nanoseconds.")
    token: str = setting("", secret=True, doc="API token; prefer `token_file` so it stays out of the config.")
    token_file: str = setting("", doc="File holding the API token (first line); used when `token` is empty.")
    auth_scheme: str = setting("Token", choices=("Token", "Bearer"), doc="Authorization scheme in front of the token.")
    ca_file: str = setting("", doc="CA bundle to verify the collector's TLS certificate; empty means the system CAs.")
    timeout_s: float = setting(10.0, min=0.5, max=300.0, doc="Timeout of one HTTP request.")
    gzip_level: int = setting(6, min=1, max=9, doc="gzip compression level of request bodies.")
    retry_initial_s: float = setting(1.0, min=0.05, max=600.0, doc="First retry delay after a failed send (the ceiling doubles per failure; full jitter).")
    retry_max_s: float = setting(60.0, min=0.1, max=3600.0, doc="Longest retry delay.")

    def check(self) -> list[tuple[str, str]]:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return [("url", f"must be an http:// or https:// URL with a host, got {redact_url(self.url)!r}")]
        precision = dict(urllib.parse.parse_qsl(parts.query)).get("precision")
        if precision is not None and precision != self.precision:
            # It won over the agent's own (write_url), and every batch of ns times was refused as out of range,
            # spooled and dropped (found by the operator audit).
            return [("url", f"its query sets precision={precision}, but the agent writes nanoseconds (precision=ns): "
                            "remove precision from the URL")]
        if self.token and self.token_file:
            return [("token_file", "set either token or token_file, not both")]
        if self.retry_max_s < self.retry_initial_s:
            return [("retry_max_s", f"must be at least retry_initial_s ({self.retry_initial_s}), got {self.retry_max_s}")]
        return []

    def write_url(self) -> str:
        """The URL with bucket, org and precision added to its query (values already there win)."""
        parts = urllib.parse.urlsplit(self.url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.setdefault("bucket", self.bucket)
        if self.org:
            query.setdefault("org", self.org)
        query.setdefault("precision", self.precision)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/api/v2/write", urllib.parse.urlencode(query), ""))


@dataclass
class SourcesSection:
    """One table per source; a source runs when its table is present."""

    nvml: nvml.Config | None = setting(None, doc="NVIDIA GPUs through NVML.")
    host: host.Config | None = setting(None, doc="Host CPU, memory, RAPL energy.")
    sim: sim.Config | None = setting(None, doc="Simulated GPUs (demo, tests).")
    jobs: jobs.Config | None = setting(None, doc="Which job holds each GPU, written as the job ledger (`job_ledger`).")

    def check(self) -> list[tuple[str, str]]:
        if not any((self.nvml, self.host, self.sim, self.jobs)):
            return [("", "no source configured; add at least one of [sources.nvml], [sources.host], [sources.sim], [sources.jobs]")]
        if self.jobs is not None and self.nvml is None:
            # One NVML reading per GPU and cycle: the ledger takes the nvml source's, never reads NVML itself.
            return [("jobs", "the job ledger reads the GPUs through the nvml source: add [sources.nvml]")]
        problems = []  # every one at once (--check-config), not the first alone (found by the ledger audit)
        if self.jobs is not None and self.jobs.interval_s < 2 * self.nvml.energy_interval_s:
            # A ledger interval closes at the nvml source's last energy reading: it must hold a few.
            problems.append(("jobs.interval_s", f"must be at least twice [sources.nvml] energy_interval_s "
                             f"({self.nvml.energy_interval_s}), got {self.jobs.interval_s}"))
        if self.jobs is not None and self.host is not None and self.host.rapl and self.jobs.interval_s < 2 * self.host.interval_s:
            # The ledger's host energy spans the host source's RAPL readings: an interval must hold a few.
            problems.append(("jobs.interval_s", f"must be at least twice [sources.host] interval_s "
                             f"({self.host.interval_s}) for the ledger's RAPL host energy, got {self.jobs.interval_s}"))
        return problems


@dataclass
class AgentConfig:
    """Configuration of `puewatch agent` (TOML). Unknown keys are errors."""

    output: OutputSection = setting(doc="Where points are sent.")
    agent: AgentSection = setting(default_factory=AgentSection, doc="The agent itself.")
    sources: SourcesSection = setting(default_factory=SourcesSection, doc="What is sampled.")

    def check(self) -> list[tuple[str, str]]:
        # [sources] may be absent altogether, so its own check() would not run.
        return [("sources", msg) for _, msg in self.sources.check()][:1]


def read_token(path: str | Path) -> str:
    """The token in a token file (its first line, stripped): at start, and again whenever the collector refuses
    the token (the shipper), so that a token fixed on the node is taken without a restart. ValueError, naming
    the file, where it cannot be read or is empty."""
    try:
        token = Path(path).read_text().splitlines()[0].strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except IndexError:
        token = ""
    if not token:
        raise ValueError(f"cannot read {path}: file is empty")
    return token


def load(path: str | Path) -> AgentConfig:
    conf = cfg.load(path, AgentConfig)
    if not conf.agent.node:
        conf.agent.node = socket.gethostname()
    if conf.output.token_file:
        try:
            conf.output.token = read_token(conf.output.token_file)
        except ValueError as exc:
            raise ConfigError(f"{path}: output.token_file: {exc}") from None
    register_secret(conf.output.token)
    if conf.output.ca_file:
        try:
            with open(conf.output.ca_file, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{path}: output.ca_file: {conf.output.ca_file} is not a readable file "
                              f"({exc.strerror or exc})") from None
    return conf


def named_files(conf: AgentConfig) -> list:
    """The files the configuration names, for `--check-config` (puewatch/configcheck.py)."""
    from puewatch.configcheck import NamedFile

    out = [NamedFile("agent.spool_dir", conf.agent.spool_dir, "the spool of batches not yet acknowledged",
                     "create it for the agent's user, or let systemd's StateDirectory= make it", directory=True)]
    if conf.output.token_file:
        out.append(NamedFile("output.token_file", conf.output.token_file, "the node's ingest token, first line",
                             "put this node's line's token from the collector's token file in it (mode 0600), or for "
                             "systemd LoadCredential=agent-token:/etc/puewatch/agent.token (agent/README.md)"))
    if conf.output.ca_file:
        out.append(NamedFile("output.ca_file", conf.output.ca_file, "the CA bundle that signed the collector's certificate",
                             "copy the CA certificate (PEM) there, or remove the key to use the system CAs"))
    return out


def reference() -> str:
    return cfg.reference_markdown(AgentConfig, "puewatch agent configuration reference")


if __name__ == "__main__":  # python -m puewatch.agent.config > agent/CONFIG.md
    print(reference(), end="")
