"""Meter profiles (TOML data files), installed as package data of `puewatch.profiles`."""
