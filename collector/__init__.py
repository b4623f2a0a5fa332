"""puewatch.collector"""
