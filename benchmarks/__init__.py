"""puewatch.benchmarks"""
