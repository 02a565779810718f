"""Give the benchmark's gateway a provider (the mock), a model, a project and a key, via gateway.services.

`python -m tests.bench.seed --upstream http://127.0.0.1:PORT/v1` with the gateway's environment
(DATABASE_URL, SECRET_KEY, ...) on a freshly migrated database; prints `BENCH_KEY <secret>`.
"""

from __future__ import annotations

import argparse
import os

MODEL = "bench-model"
UPSTREAM_MODEL = "upstream-model"


def seed(*, upstream: str) -> str:
    from gateway import services

    unit = services.create_business_unit(name="Benchmark")
    provider = services.create_provider(
        name="bench-mock", kind="openai_compatible", base_url=upstream, api_key="sk-bench", approved=True
    )
    services.create_model(
        name=MODEL, deployments=[services.DeploymentSpec(provider=provider, upstream_model=UPSTREAM_MODEL)]
    )
    project = services.create_project(name="bench", business_unit=unit, allowed_models=[MODEL])
    return services.create_virtual_key(project=project, name="bench").secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the mock upstream's /v1 URL")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    print("BENCH_KEY", seed(upstream=args.upstream), flush=True)


if __name__ == "__main__":
    main()
