"""The measurement core: the one place each domain rule lives.

- `site`: the site model (meters, roles, IT measurement points and the PUE category, zones,
  which meters make E_DC, E_IT and each zone's pPUE boundary);
- `schema`: the names, tags and fields of every stored series;
- `batch`: typed, columnar batches of points, how series travel inside the collector (line
  protocol only on the wire);
- `timefmt`: time in int64 ns and RFC 3339, the one format and parser;
- `numbers`: how a number and a ratio are published (null where unknown, not finite, or over a
  denominator that is not positive);
- `energy`: how a meter's register readings become interval energies (the register-energy
  policy: power limit, wrap or reset, impossible jumps) and the physical floors of ratios
  (`floors`, which the report readers `check` and `city` use without the kernels).

The live pipeline (`puewatch collector`), the reports (`report`, `export`, `recompute`), the
demo and the benchmarks import these; none rebuilds them.
"""
