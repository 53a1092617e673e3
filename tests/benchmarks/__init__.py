"""
Tests for the benchmark runner's pure parts (C{benchmarks/}).
"""
