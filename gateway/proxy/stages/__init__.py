"""The stages between the dialects (gateway/proxy/dialects) and the wire (gateway/proxy/adapters):
small, explicit steps of the one pipeline (gateway/proxy/pipeline.py).

- `screening`: the guardrails on the input (and its classifier) and on the output, with verdicts;
- `admission`: the rate limits and the budget hold, taken together and released together;
- `usage`: tokens (reported or estimated, one estimator) and what they cost.

The pipeline keeps one `Exchange` (gateway/proxy/exchange.py) per request that points at these
stages; at the end it turns into a frozen `RequestRecord` (gateway/proxy/record.py) for the log
writer and telemetry.
"""
