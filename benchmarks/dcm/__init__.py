"""The DCM tabular protocol against DoWhy (python -m benchmarks.dcm): protocol, systems; the tabular
diffusion defaults (python -m benchmarks.dcm.defaults)."""
