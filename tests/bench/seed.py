"""Give the benchmark's gateway a provider (the mock), a model, a project and a key, via gateway.services.

`python -m tests.bench.seed --upstream http://127.0.0.1:PORT/v1` with the gateway's environment
(DATABASE_URL, SECRET_KEY, ...) on a freshly migrated database; prints `BENCH_KEY <secret>`.
"""

from __future__ import annotations

import argparse
import os
from decimal import Decimal

MODEL = "bench-model"
UPSTREAM_MODEL = "upstream-model"
# The slow-streams scenario's model: the mock trickles its answer (`mock-drip=<every>,<seconds>`).
SLOW_MODEL = "bench-slow"


def seed(*, upstream: str, governed: bool = False, slow_upstream_model: str = "mock-drip=0.5,15") -> str:
    from billing import services as billing
    from gateway import services

    unit = services.create_business_unit(name="Benchmark")
    provider = services.create_provider(
        name="bench-mock", kind="openai_compatible", base_url=upstream, api_key="sk-bench", approved=True
    )
    model = services.create_model(
        name=MODEL, deployments=[services.DeploymentSpec(provider=provider, upstream_model=UPSTREAM_MODEL)]
    )
    services.create_model(
        name=SLOW_MODEL,
        deployments=[services.DeploymentSpec(provider=provider, upstream_model=slow_upstream_model)],
    )
    project = services.create_project(name="bench", business_unit=unit, allowed_models=[MODEL, SLOW_MODEL])
    issued = services.create_virtual_key(project=project, name="bench")
    if governed:  # every control on, far above the load: what they cost, not what they refuse
        for deployment in model.deployments.all():
            services.set_deployment_prices(
                deployment=deployment, input_price=Decimal("2.50"), output_price=Decimal("10.00")
            )
        billing.set_budget(target=project, monthly_limit="1000000000.00")
        billing.set_budget(target=issued.key, monthly_limit="1000000000.00")
        limits = {"rpm_limit": 2_000_000_000, "tpm_limit": 2_000_000_000}
        services.update_project(project=project, **limits)
        services.set_key_limits(key=issued.key, max_streams=None, **limits)
    return issued.secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the mock upstream's /v1 URL")
    parser.add_argument("--governed", action="store_true", help="budgets, prices and rate limits on")
    parser.add_argument(
        "--slow-upstream-model", default="mock-drip=0.5,15", help=f"what {SLOW_MODEL} asks the mock for"
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    print(
        "BENCH_KEY",
        seed(upstream=args.upstream, governed=args.governed, slow_upstream_model=args.slow_upstream_model),
        flush=True,
    )


if __name__ == "__main__":
    main()
