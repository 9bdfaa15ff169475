"""`manage.py create_api_key --user EMAIL --scopes a,b`: issue an API key; it is printed once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import ApiScope, User
from accounts.services import api_key_create
from autoflow.exceptions import AppError


class Command(BaseCommand):
    help = (
        "Create an API key for a user and print it once (only its hash is stored). "
        f"Scopes: {', '.join(ApiScope.values)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="The key owner's e-mail.")
        parser.add_argument("--scopes", required=True, help="Comma-separated scopes.")
        parser.add_argument("--name", default="created by manage.py", help="A label.")
        parser.add_argument("--expires-days", type=int, help="Days until it expires.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(email__iexact=options["user"]).first()
        if user is None:
            raise CommandError(f"No user with e-mail {options['user']}.")
        if not user.is_active:
            raise CommandError(f"{user.email} is deactivated; its keys would not work.")
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        unknown = sorted(set(scopes) - set(ApiScope.values))
        if not scopes or unknown:
            raise CommandError(
                f"Unknown scope(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(ApiScope.values)}."
            )
        expires_at = None
        if options["expires_days"] is not None:
            if options["expires_days"] < 1:
                raise CommandError("--expires-days must be at least 1.")
            expires_at = timezone.now() + dt.timedelta(days=options["expires_days"])
        try:
            api_key, raw_key = api_key_create(
                user=user, name=options["name"], scopes=scopes, expires_at=expires_at
            )
        except AppError as error:
            raise CommandError(error.message) from error
        self.stderr.write(
            f"API key {api_key.prefix} for {user.email}, scopes {','.join(api_key.scopes)}"
            f"{f', expires {expires_at.isoformat()}' if expires_at else ''}. "
            "It is shown once; store it now."
        )
        self.stdout.write(raw_key)
