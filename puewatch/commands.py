"""Argument declarations for each subcommand (no heavy imports here)."""

from __future__ import annotations

import argparse
import math


def register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed against baselines measured in the same run")
    bsub = p.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    k = bsub.add_parser(
        "kernels",
        help="kernel throughput vs a plain array copy and pandas",
        description=(
            "Times every kernel on N samples and prints samples/s and effective GB/s beside "
            "a plain array copy's GB/s and the pandas equivalent's time, measured in the same run."
        ),
    )
    k.add_argument("-n", "--samples", type=int, default=10_000_000, help="samples per kernel (default 10,000,000)")
    k.add_argument("--repeat", type=int, default=5,
                   help="timed calls in a row that no longer beat the best before it is reported (default 5)")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.add_argument("--no-pandas", action="store_true", help="skip the pandas baselines")
    k.set_defaults(handler="puewatch.benchmarks.kernels:main")
    a = bsub.add_parser(
        "agent",
        help="node agent CPU and memory vs a bare NVML polling loop",
        description=(
            "Runs the agent against a fake NVML library (compiled with gcc) serving N GPUs at H Hz, or the "
            "machine's NVIDIA driver (--driver real), and "
            "reports its CPU time per second of wall time and peak RSS, beside a bare loop that makes the "
            "same NVML calls and nothing else (the floor), measured in the same run."
        ),
    )
    a.add_argument("--json", action="store_true", help="print machine-readable JSON")
    a.add_argument("--duration", type=float, default=60.0, help="measured seconds (default 60)")
    a.add_argument("--gpus", type=int, default=8, help="simulated GPUs (default 8; with --driver real, every GPU the driver has)")
    a.add_argument(
        "--driver", choices=("fake", "real"), default="fake",
        help="fake: the fake NVML library, compiled here (default); real: this machine's NVIDIA driver (a GPU node)",
    )
    a.add_argument("--hz", type=float, default=10.0, help="power/energy samples per second per GPU (default 10)")
    a.set_defaults(handler="puewatch.benchmarks.agent:main")
    i = bsub.add_parser(
        "ingest",
        help="collector write endpoint throughput in front of influxd, vs influxd direct",
        description=(
            "POSTs gzip'd 5,000-line agent batches (64 nodes x 8 GPUs) from a load generator process to the "
            "ingest server (its own process) whose sink writes to a real influxd 1.6.7, and reports lines/s, "
            "p99 arrival-to-stored latency and server CPU beside the same batches written straight to influxd, "
            "measured in the same run."
        ),
    )
    i.add_argument("--json", action="store_true", help="print machine-readable JSON")
    i.add_argument("--seconds", type=float, default=30.0, help="total measured seconds, split over three phases (default 30)")
    i.set_defaults(handler="puewatch.benchmarks.ingest:main")
    s = bsub.add_parser(
        "snmp",
        help="SNMP meter polling rate vs Prometheus snmp_exporter",
        description=(
            "Serves N simulated meters (8 power/energy objects each) with snmpsim and measures full polling cycles "
            "of the puewatch poller (device polls/s, poller CPU seconds) and of snmp_exporter against the same "
            "recordings, in the same run."
        ),
    )
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.add_argument("--meters", type=int, default=500, help="simulated meters (default 500)")
    s.add_argument("--cycles", type=int, default=3, help="timed full cycles per poller (default 3)")
    s.add_argument("--no-exporter", action="store_true", help="skip the snmp_exporter baseline")
    s.set_defaults(handler="puewatch.benchmarks.snmp:main")
    r = bsub.add_parser(
        "report",
        help="a year-long report from the embedded store and influxd vs a plain NumPy pass",
        description=(
            "Synthesises METERS meters read every STEP-S seconds for DAYS days (registers, power-only meters, gaps, "
            "a wrap, a reset) and times compute_report on them in memory, read_store + compute_report from an "
            "embedded store holding all of it (the end-to-end figure, target < 10 s), the row layout and a real "
            "influxd 1.6.7 for subsets, beside a plain NumPy per-day energy pass, in the same run."
        ),
    )
    r.add_argument("--json", action="store_true", help="print machine-readable JSON")
    r.add_argument("--meters", type=int, default=500, help="meters (default 500)")
    r.add_argument("--days", type=int, default=365, help="days of readings (default 365)")
    r.add_argument("--step-s", type=float, default=60.0, help="seconds between readings (default 60)")
    r.add_argument("--influx-meters", type=int, default=5, help="meters loaded into influxd, a subset (default 5; 0: skip)")
    r.add_argument("--rows-meters", type=int, default=5, help="meters in the row-layout subset (default 5)")
    r.add_argument("--workdir", default="", help="directory for the temporary stores (default: the system's temp)")
    r.set_defaults(handler="puewatch.benchmarks.report:main")
    j = bsub.add_parser(
        "jobs",
        help="job attribution of a day of a 1,000-node site's ledger vs a plain NumPy group-by",
        description=(
            "Synthesises NODES nodes x GPUS GPUs x MINUTES minute ledger records (jobs of 1-12 h, four zones) and "
            "times the attribution (cells, factors, green share, per job and per tenant, unattributed, identities) "
            "beside a plain NumPy group-by of the same records' IT energy per job, in the same run (target < 10 s); "
            "then reads a READ_NODES-node ledger from an embedded store (and READ_INFLUX_NODES of its nodes from a real "
            "influxd 1.6.7) whole and series by series (the read before), in the same run."
        ),
    )
    j.add_argument("--json", action="store_true", help="print machine-readable JSON")
    j.add_argument("--nodes", type=int, default=1000, help="nodes (default 1000)")
    j.add_argument("--gpus", type=int, default=8, help="GPUs per node (default 8)")
    j.add_argument("--minutes", type=int, default=1440, help="minutes of records (default 1440, one day)")
    j.add_argument("--repeat", type=int, default=3, help="timed repetitions; the best is reported (default 3)")
    j.add_argument("--read-nodes", type=int, default=200, help="nodes of the ledger read from an embedded store, "
                   "whole and series by series (default 200; 0: skip)")
    j.add_argument("--read-minutes", type=int, default=0, help="minutes of that ledger (default: --minutes)")
    j.add_argument("--read-influx-nodes", type=int, default=20, help="of those nodes, how many are also loaded into "
                   "a real influxd 1.6.7 and read both ways (default 20; 0: skip)")
    j.add_argument("--workdir", default="", help="directory for the temporary store (default: the system's temp)")
    j.set_defaults(handler="puewatch.benchmarks.jobs:main")
    st = bsub.add_parser(
        "store",
        help="embedded store writes: typed batches vs line protocol text",
        description=(
            "Writes the collector's shapes (the pipeline's cells, SNMP readings, agents' line protocol, job ledger "
            "lines with their string fields) to fresh embedded stores as typed batches, as text parsed once into "
            "columns, and as text parsed line by line "
            "(the path before typed batches), and reports points/s of each, measured in the same run."
        ),
    )
    st.add_argument("--json", action="store_true", help="print machine-readable JSON")
    st.add_argument("--series", type=int, default=200, help="derived series per step (default 200)")
    st.add_argument("--cells", type=int, default=100, help="cells per series per step (default 100)")
    st.add_argument("--steps", type=int, default=5, help="steps (batches) written (default 5)")
    st.add_argument("--devices", type=int, default=100, help="SNMP devices, 20 readings each (default 100)")
    st.add_argument("--nodes", type=int, default=64,
                    help="GPU nodes (8 GPUs each) in the agent workload; the ledger's has half (default 64)")
    st.set_defaults(handler="puewatch.benchmarks.store:main")


def register_snmp(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("snmp", help="SNMP facility meters: probe a device")
    ssub = p.add_subparsers(dest="snmp_command", metavar="ACTION", required=True)
    pr = ssub.add_parser(
        "probe",
        help="show a device, its matching profile and every power and energy reading",
        description=(
            "Reads sysDescr and sysObjectID, chooses the meter profile (or uses --profile), discovers the tables and "
            "prints every power (W) and energy (Wh) reading once, as the collector would record it: refused values "
            "with why, the values the device estimates, the wraps the collector takes. Exit status 0 read, 1 the "
            "device did not answer usefully (timeout, credentials, no matching profile, no power or energy value "
            "with the profile; what was read is still printed), 2 bad arguments."
        ),
    )
    pr.add_argument("target", metavar="HOST[:PORT]", help="the device's SNMP agent (port 161 by default)")
    pr.add_argument("--community", "-c", help="SNMPv2c community (default public)")
    pr.add_argument("--user", "-u", help="SNMPv3 user (selects SNMPv3)")
    pr.add_argument("--auth-key", help="SNMPv3 authentication pass phrase (omit for noAuthNoPriv)")
    pr.add_argument("--priv-key", help="SNMPv3 privacy pass phrase (omit for authNoPriv)")
    pr.add_argument("--auth-proto", default="SHA", choices=("MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"),
                    help="SNMPv3 authentication protocol (default SHA)")
    pr.add_argument("--priv-proto", default="AES", choices=("DES", "AES", "AES-128", "AES-192", "AES-256"),
                    help="SNMPv3 privacy protocol (default AES, i.e. AES-128)")
    pr.add_argument("--context", help="SNMPv3 context name")
    pr.add_argument("--profile", help="meter profile name (default: chosen from sysObjectID)")
    pr.add_argument("--profile-dir", action="append", metavar="DIR", help="extra directory of profile files (repeatable)")
    pr.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default 2)")
    pr.add_argument("--retries", type=int, default=1, help="retries per request (default 1)")
    pr.add_argument("--json", action="store_true", help="print machine-readable JSON")
    pr.set_defaults(handler="puewatch.collector.snmp.probe:main")


def register_agent(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agent",
        help="run the GPU node agent (NVML, host, RAPL) and ship to the collector",
        description=(
            "Samples the configured sources on a fixed-rate schedule, writes every batch to an on-disk "
            "spool and ships it gzip-compressed to an InfluxDB-compatible write endpoint. "
            "systemd notify-aware (READY, WATCHDOG, STATUS, STOPPING); logs to stderr."
        ),
    )
    p.add_argument(
        "hook", nargs="?", choices=("job-start", "job-end"),
        help="as Slurm's Prolog/Epilog: record (job-start) or forget (job-end) the GPUs of the job in "
        "SLURM_JOB_ID, SLURM_JOB_ACCOUNT, SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES, for the job ledger",
    )
    p.add_argument("--config", metavar="FILE", help="agent configuration (TOML); required unless a hook is given")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--state-dir", metavar="DIR", help="the hook's state directory (default: [sources.jobs] hook_state_dir, "
                   "else /run/puewatch/jobs)")
    p.set_defaults(handler="puewatch.agent.main:main")


def register_collector(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collector",
        help="run the site collector (ingest, SNMP meters, live PUE, store)",
        description=(
            "Takes in the agents' line protocol on an InfluxDB-compatible endpoint, polls the facility meters over "
            "SNMP, computes live energy, PUE, pPUE, CLF, PLF and COP with the kernels, and writes raw and derived "
            "series to the configured store (embedded SQLite by default, InfluxDB v1 or v2 API), spooling to disk "
            "while the store is down. systemd notify-aware."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="collector configuration (TOML)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.set_defaults(handler="puewatch.collector.main:main")

def register_influx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("influx", help="prepare an InfluxDB (v1 API) for puewatch")
    isub = p.add_subparsers(dest="influx_target", metavar="ACTION", required=True)
    s = isub.add_parser(
        "setup",
        help="create the database, retention policies and downsampling continuous queries",
        description=(
            "Creates the database, the retention policies raw (DEFAULT), minute and hourly, and the continuous "
            "queries that keep 1-minute means of the power series written (SNMP power readings, GPU power) and of the PUE and pPUE series, and hourly sums of the energy series. "
            "Idempotent: run it again to apply changed durations (ALTER) or after an upgrade."
        ),
    )
    s.add_argument("--url", default="http://127.0.0.1:8086", help="InfluxDB URL (default http://127.0.0.1:8086)")
    s.add_argument("--database", required=True, help="database name (InfluxDB 2.x/3.x: the DBRP-mapped database)")
    s.add_argument("--user", help="admin user (default: $PUEWATCH_INFLUX_USER)")
    s.add_argument("--password", help="password (default: $PUEWATCH_INFLUX_PASSWORD; prefer the variable)")
    s.add_argument("--raw-retention", default="30d", metavar="DURATION", help="raw points (default 30d)")
    s.add_argument("--minute-retention", default="104w", metavar="DURATION", help="1-minute means (default 104w, 2 years)")
    s.add_argument("--hourly-retention", default="520w", metavar="DURATION", help="hourly energy (default 520w, 10 years)")
    s.add_argument("--timeout", type=float, default=30.0, metavar="S", help="HTTP timeout in seconds (default 30)")
    s.add_argument("--dry-run", action="store_true", help="print the InfluxQL and change nothing")
    s.set_defaults(handler="puewatch.collector.stores.influx1:main")


def register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run a whole simulated site on this machine (agents, SNMP meters, collector) with a live view",
        description=(
            "Starts, on 127.0.0.1, simulated facility meters answering over real SNMP (snmpsim), the real collector "
            "and N real agents with simulated GPUs; shows live PUE, pPUE, CLF, GPU power and meter health; stops "
            "everything at the end or on Ctrl-C and prints a summary computed from the store."
        ),
    )
    p.add_argument("--duration", type=float, default=120.0, help="seconds to run once everything is up (default 120)")
    p.add_argument("--nodes", type=int, default=4, help="simulated GPU nodes, 8 GPUs each, over two zones (default 4)")
    p.add_argument("--dir", default="puewatch-demo", help="data directory: configs, logs, spools, store (default ./puewatch-demo)")
    p.add_argument(
        "--store",
        metavar="STORE",
        help="where the collector writes: a file path or sqlite:PATH (embedded SQLite; default DIR/state/puewatch.sqlite), "
        "or http[s]://[user:password@]host:port/DATABASE (InfluxDB v1 API; the database is created if missing)",
    )
    p.add_argument("--json", action="store_true", help="no live view; print the summary as JSON at the end")
    p.set_defaults(handler="puewatch.demo:main")


def _pue_target(text: str) -> float:
    """A PUE target: a finite number of at least 1 (no PUE is below 1; nan and -1 were taken)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1.0):
        raise argparse.ArgumentTypeError(f"a PUE target is a number of at least 1 (e.g. 1.3), got {text!r}")
    return value


def _add_targets_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--targets", metavar="FILE", help="targets file (TOML): rules, optionally starting from a preset")
    g.add_argument("--preset", metavar="NAME", help="a built-in preset (see docs/city-guide.md), e.g. miit-2021")


def register_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check a report against targets: pass/fail per rule with the evidence",
        description=(
            "Checks a report (puewatch.report/1 JSON) against a targets file or a built-in preset and prints each "
            "rule's verdict with the value, the limit and the comparison. Exit status 0 when every rule passes, "
            "1 when any fails, 2 on bad input."
        ),
    )
    p.add_argument("report", metavar="REPORT", help="report JSON file ('-' for standard input)")
    _add_targets_args(p)
    p.add_argument("--pubkeys", metavar="DIR", help="directory of *.pub keys to verify the signature (require_signature)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler="puewatch.city.check:main")


def register_keys(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="Ed25519 signing keys for reports")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    n = ksub.add_parser(
        "new",
        help="make a key pair: NAME.key (private, mode 0600) and NAME.pub; prints the key id",
        description="Writes DIR/NAME.key (PEM PKCS#8, mode 0600) and DIR/NAME.pub (PEM SubjectPublicKeyInfo) and "
        "prints the key id (first 16 hex characters of SHA-256 of the raw public key). Never overwrites a key.",
    )
    n.add_argument("--out", required=True, metavar="DIR", help="directory to write the key pair in")
    n.add_argument("--name", default="puewatch", help="file name stem (default puewatch)")
    n.set_defaults(handler="puewatch.signing:keys_new_main")


def register_token(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="tokens of the collector's ingest endpoint")
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    a = tsub.add_parser(
        "add",
        help="add a writer (a node's agent, or a feeder of meters) with a fresh random token",
        description="Appends `NAME TOKEN [SCOPE]` to the token file (created mode 0600) and writes the token alone to "
        "the writer's copy (mode 0600, never overwritten) to install on the node; the token is printed nowhere. "
        "Without --feeder or --nodes the token writes node NAME's series (collector/README.md, Tokens).",
    )
    a.add_argument("name", metavar="NAME", help="the node's name (the agent's `node`), or the feeder's")
    a.add_argument("--file", required=True, metavar="PATH", help="the collector's token file (`[ingest] token_file`)")
    a.add_argument("--feeder", metavar="METERS", help="a feeder token for these ingest meters (comma-separated)")
    a.add_argument("--nodes", metavar="GLOBS", help="a relay's agent token for the nodes these globs match (comma-separated)")
    a.add_argument("--out", metavar="PATH", help="the writer's copy of the token (default: NAME.token beside the token file)")
    a.set_defaults(handler="puewatch.collector.tokenfile:add_main")


def register_sign(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sign",
        help="sign a report file with an Ed25519 private key",
        description="Adds `signature` {alg, key_id, value, canonicalization} over the report's RFC 8785 (JCS) form "
        "(docs/report-schema.md); an existing signature is replaced.",
    )
    p.add_argument("report", metavar="REPORT", help="report JSON file ('-' for standard input)")
    p.add_argument("--key", required=True, metavar="KEY", help="private key file (from `puewatch keys new`)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the signed report here (default: standard output)")
    p.set_defaults(handler="puewatch.signing:sign_main")


def register_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="verify a report's or a voucher statement's signature with a public key",
        description="The document's kind is read from its `schema`. Exit status 0 when the signature is valid; 1 when the report is unsigned, signed with another "
        "key, or changed since it was signed; 2 on bad input.",
    )
    p.add_argument("report", metavar="REPORT", help="report JSON file ('-' for standard input)")
    p.add_argument("--pubkey", required=True, metavar="KEY.pub", help="the site's public key")
    p.set_defaults(handler="puewatch.signing:verify_main")


def register_city(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "city",
        help="one table over many sites' reports: signatures, targets, the city's energy-weighted PUE",
        description=(
            "Reads many sites' reports, verifies their signatures against --pubkeys, checks each against the "
            "targets and prints one table, plus the city's energy-weighted PUE (sum of facility energy / sum of IT "
            "energy) over all reports and over the validly signed ones; with --statements, checks tenants' voucher "
            "statements against the reports. Exit status 0 when every site (and statement) passes, 1 when any "
            "fails, 2 on bad input."
        ),
    )
    p.add_argument("reports", nargs="+", metavar="REPORT", help="report JSON files")
    _add_targets_args(p, required=False)
    p.add_argument("--pubkeys", metavar="DIR", help="directory of the sites' *.pub keys, matched by key id")
    p.add_argument("--statements", nargs="+", metavar="STATEMENT", help="voucher evidence statements "
                   "(`puewatch statement`) to check against the REPORTs they name: signature, report digest, period, "
                   "PUE, and their facility-inclusive energy within each report's E_DC (targets then optional)")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page here")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    p.set_defaults(handler="puewatch.city.table:main")

def _period_args(p: argparse.ArgumentParser, required: bool, max_gap: bool = True) -> None:
    what = "" if required else (" (default: the whole days the readings span, less a register's readings "
                                "that an export adds beyond its window)")
    p.add_argument("--from", dest="start", required=required, metavar="TIME",
                   help="period start, a date (2025-01-01: its midnight in the site's [collector] timezone, UTC "
                   f"unless set) or an RFC 3339 time{what}")
    p.add_argument("--to", dest="end", required=required, metavar="TIME", help=f"period end (excluded){what}")
    if not max_gap:
        return  # jobs and statements read the collector's cells, not readings: a gap there means nothing
    p.add_argument("--max-gap", dest="max_gap_s", type=float, default=900.0, metavar="SECONDS",
                   help="longest interval between readings that counts as observed and that power is integrated "
                   "across (default 900)")


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="collector.toml (the site, its meters and its store)")
    p.add_argument("--store", metavar="STORE",
                   help="a file path or sqlite:PATH (embedded SQLite), or http[s]://[user:password@]host:port[/DATABASE] "
                   "(InfluxDB v1 API), as `demo --store` (default: the config's store)")
    p.add_argument("--database", help="InfluxDB database, where the --store URL names none, or in place of the "
                   "config's (default: the config's; refused with an embedded store)")
    p.add_argument("--user", help="InfluxDB 1.x user")
    p.add_argument("--password-file", help="file holding the InfluxDB 1.x password (first line)")
    p.add_argument("--token-file", help="file holding an InfluxDB 2.x/3.x API token (first line), for their v1 "
                   "compatibility API (default: the config's store.influx2 token)")


def _report_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json", "csv", "html"), default="table",
                   help="table (terminal), json (docs/report-schema.md), csv (the period, monthly and daily rows), html")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--target", type=_pue_target, help="PUE target drawn on the HTML figure (e.g. 1.3)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--sign", metavar="KEY", help="sign the JSON report with this Ed25519 private key (`puewatch keys new`)")
    p.add_argument("--carbon", metavar="FILE", help="the operator's carbon data file (config/carbon.toml): adds green "
                   "share, carbon and CUE (ISO/IEC 30134-8) with the emission factors' and green energy's sources")


def register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="PUE (annual or interim), pPUE, CLF/PLF/ERF/REF/WUE over a period, from the store",
        description="Reads every meter's raw readings for the period from the store and computes the report "
        "(energies from registers where meters have them, else integrated power, marked estimated). Exit status 1 "
        "when the store holds no meter reading in the period (the message names where its data lies), 2 on bad input.",
    )
    _store_args(p)
    _period_args(p, required=True)
    _report_output_args(p)
    p.set_defaults(handler="puewatch.report.cli:report_main")


def register_jobs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "jobs",
        help="energy per job and per tenant from the job ledger, with the measured facility overhead, green share "
        "and carbon",
        description="Reads the agents' job ledger records and the collector's per-cell energies for the period: per "
        "job and per tenant, GPU-hours by GPU model, GPU, IT and facility-inclusive energy (each cell's measured pPUE "
        "or PUE), completeness, green share and carbon; the energy no job holds (unattributed) and the two identities "
        "(docs/auditor-guide.md, Energy per job).",
    )
    _store_args(p)
    _period_args(p, required=True, max_gap=False)
    p.add_argument("--tenant", help="only this tenant's jobs and total")
    p.add_argument("--cell", dest="cell_s", type=float, default=60.0, metavar="SECONDS",
                   help="attribution cell length, a whole number of collector cells (default 60)")
    p.add_argument("--carbon", metavar="FILE", help="the operator's carbon data file (config/carbon.toml): emission "
                   "factors with their sources, green certificates and PPAs")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON (schema puewatch.jobs/1, docs/report-schema.md)")
    out.add_argument("--csv", action="store_true", help="CSV: one row per job, one per tenant, then the unattributed "
                     "energy and the site's totals (warnings on standard error)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(handler="puewatch.jobs.cli:jobs_main")


def register_statement(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "statement",
        help="a tenant's signed voucher evidence statement (JSON, optionally HTML) for a period",
        description="The tenant's jobs and GPU-hours by GPU model, IT and facility-inclusive energy (the cell rule of "
        "`puewatch jobs`), the site's PUE over the tenant's days with its ISO/IEC 30134-2 category and completeness, "
        "green share and carbon, and the SHA-256 of the site's signed report for the same period (--report; its "
        "signature must verify with KEY's public half). Signed with KEY as reports are (docs/report-schema.md).",
    )
    _store_args(p)
    _period_args(p, required=True, max_gap=False)
    p.add_argument("--tenant", required=True, help="the tenant the statement is for")
    p.add_argument("--sign", required=True, metavar="KEY", help="the site's Ed25519 private key (`puewatch keys new`)")
    p.add_argument("--report", metavar="SIGNED_REPORT", help="the site's signed report (puewatch report --json --sign) "
                   "for the same period: its digest and its daily energies go into the statement")
    p.add_argument("--cell", dest="cell_s", type=float, default=60.0, metavar="SECONDS",
                   help="attribution cell length, a whole number of collector cells dividing an hour, so that no cell "
                   "crosses the site's midnight (default 60)")
    p.add_argument("--carbon", metavar="FILE", help="the operator's carbon data file (config/carbon.toml)")
    p.add_argument("--out", metavar="FILE", help="write the signed JSON here (default: standard output)")
    p.add_argument("--html", metavar="FILE", help="also write an HTML rendering here")
    p.set_defaults(handler="puewatch.jobs.statement:statement_main")


def register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the meters' raw readings for a period as CSV (for `puewatch recompute`)",
        description="CSV long format: time (RFC 3339 UTC, ns), meter, power_w, energy_wh; ordered by meter, then "
        "time; includes --max-gap of readings on each side of the period. Exit status 1 when the store holds no meter "
        "reading in the period (the message names where its data lies), 2 on bad input.",
    )
    _store_args(p)
    _period_args(p, required=True)
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(handler="puewatch.report.cli:export_main")


def register_recompute(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recompute",
        help="recompute a report from exported readings and the site file, without the store",
        description="The same computation as `puewatch report`, from `puewatch export` CSV and the site's "
        "[collector] site, [meters], [zones] and [snmp] devices/profile_dirs (a collector.toml is accepted).",
    )
    p.add_argument("--readings", required=True, help="CSV from `puewatch export`")
    p.add_argument("--site", required=True, help="site file (or collector.toml)")
    _period_args(p, required=False)
    _report_output_args(p)
    p.set_defaults(handler="puewatch.report.cli:recompute_main")
