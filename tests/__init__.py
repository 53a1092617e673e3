"""
The mqttx test suite (trial).

Hypothesis runs with no per-example deadline and without its "too slow"
health check: both measure time, and on a loaded two-core CI machine (or
under C{trial -j}) they fail tests whose properties hold. What the
property tests check is behaviour, not speed.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("mqttx", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mqttx")
