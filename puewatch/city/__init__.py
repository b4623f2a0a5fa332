"""For auditors and the city: targets, `puewatch check` and `puewatch city`.

Everything here reads reports in the `puewatch.report/1` JSON form
(docs/report-schema.md), never the collector's store, so a city can verify a
site's report on its own machine with nothing but the file and the site's
public key. Signing and verification live in `puewatch.signing`.
"""
