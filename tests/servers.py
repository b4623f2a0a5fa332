"""Real servers for tests: they live in `puewatch.benchmarks.servers`, shared with the benchmarks."""

from puewatch.benchmarks.servers import (  # noqa: F401
    LOOPBACK,
    Influxd,
    VictoriaMetrics,
    free_port,
    free_udp_port,
    http,
    influxd,
    scripted_http,
    victoria_metrics,
)
