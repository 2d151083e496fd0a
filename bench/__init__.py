"""CPU and GPU benchmarks of the inference paths (``python -m bench``, ``python -m bench.gpu_eval``)."""
