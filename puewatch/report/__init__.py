"""Reports: PUE and its relatives over a period, from a store or an exported CSV (docs/report-schema.md)."""
