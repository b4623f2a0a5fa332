"""Where the collector writes: InfluxDB v2 and v1 APIs, the embedded store, the on-disk spool."""
