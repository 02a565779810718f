"""Set up the embedded demo: an admin, a business unit, a project, the demo model and a key, and a
portal user `demo` who owns the demo project (its password is printed once, on the first run).

Idempotent: what exists is kept. A new key is issued on every run (keys are shown only once).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from gateway import services
from gateway.models import BusinessUnit, Model, Project, Provider

DEMO_MODEL = "demo"


class Command(BaseCommand):
    help = "Create the demo admin, project, demo model and a fresh virtual key, and print how to call it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the gateway will listen.")

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        User = get_user_model()
        password = None
        with transaction.atomic():
            admin = User.objects.filter(username="admin").first()
            if admin is None:
                password = secrets.token_urlsafe(12)
                admin = User.objects.create_superuser("admin", "admin@localhost", password)
            unit = BusinessUnit.objects.filter(name="Demo unit").first()
        if unit is None:
            unit = services.create_business_unit(name="Demo unit")
        provider = Provider.objects.filter(kind=Provider.Kind.DEMO).first()
        if provider is None:
            provider = services.create_provider(name="Demo provider", kind=Provider.Kind.DEMO, approved=True)
        if not Model.objects.filter(name=DEMO_MODEL).exists():
            services.create_model(
                name=DEMO_MODEL,
                description="Built-in demo: repeats your last message; needs no network.",
                deployments=[services.DeploymentSpec(provider=provider, upstream_model="demo-echo")],
            )
        project = Project.objects.filter(name="Demo project", business_unit=unit).first()
        if project is None:
            project = services.create_project(name="Demo project", business_unit=unit, allowed_models=[DEMO_MODEL])
            services.add_member(project=project, user=admin, role="owner")
        if not project.allowed_models.filter(name=DEMO_MODEL).exists():
            raise CommandError("The demo project exists but may not use the demo model; fix it in the admin.")
        demo_password = None
        demo = User.objects.filter(username="demo").first()
        if demo is None:
            demo_password = secrets.token_urlsafe(12)
            demo = User.objects.create_user("demo", "demo@localhost", demo_password)  # stored hashed only
        if not project.memberships.filter(user=demo).exists():
            services.add_member(project=project, user=demo, role="owner")
        issued = services.create_virtual_key(project=project, name="demo key", created_by=admin)

        out = self.stdout.write
        out("")
        out(self.style.SUCCESS("Symbiosis Gateway demo is ready."))
        if password:
            out(f"  Admin:   {base_url}/admin/  user 'admin', password {password}  (shown once)")
        else:
            out(f"  Admin:   {base_url}/admin/  user 'admin' (password set earlier)")
        out(f"  API key: {issued.secret}  (shown once; a new one is made on each run)")
        if demo_password:
            out(f"  Portal:  {base_url}/  user 'demo', password {demo_password}  (shown once)")
        else:
            out(
                f"  Portal:  {base_url}/  user 'demo' (password printed on the first run; "
                "reset it with: manage.py changepassword demo)"
            )
        out("")
        out("  Try it:")
        out(f"    curl {base_url}/v1/chat/completions \\")
        out(f"      -H 'Authorization: Bearer {issued.secret}' -H 'Content-Type: application/json' \\")
        out(f'      -d \'{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\'')
        out("")
        out(
            "    python -c \"from openai import OpenAI; c = OpenAI(base_url='"
            + base_url
            + "/v1', api_key='"
            + issued.secret
            + "'); print(c.chat.completions.create(model='"
            + DEMO_MODEL
            + "', messages=[{'role': 'user', 'content': 'Hello!'}]).choices[0].message.content)\""
        )
        out("")
