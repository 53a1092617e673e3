"""
The mqttx benchmark runner (issue 4).

Starts brokers under test, drives them with a load generator (the C tool
C{mqload} when C{MQLOAD} names its binary, else L{benchmarks.pyload}),
and reports one JSON line per run and a summary table of medians and
ratios. Run C{python -m benchmarks.run --help}; see C{benchmarks/README.md}.

Nothing here is imported by the broker, and nothing here imports the broker:
mqttx is always measured as a separate C{twistd} process.
"""
