"""`make bench`: the gateway against the mock upstream called directly, a bare Django forwarder and LiteLLM.

Run with `python -m tests.bench.run` (add `--help` for the options, `--profile` for a py-spy profile).
No file here starts with `test_`, so pytest never collects the benchmark.
"""
