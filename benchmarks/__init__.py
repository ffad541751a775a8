"""edgeveda-ffi's benchmarks: pytest-benchmark suites (``test_bench_*.py``) and
``benchmarks.compare`` (``python -m benchmarks.compare``, ``edgeveda bench --compare``).

See benchmarks/README.md.
"""
