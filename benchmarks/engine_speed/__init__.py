"""The engine against the same arithmetic by hand and DoWhy gcm (python -m benchmarks.engine_speed)."""
