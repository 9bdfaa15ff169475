"""Drop the API key's foreign key index, which `apikey_user_created` covers."""

from django.conf import settings
from django.db import migrations

from autoflow.migration_operations import drop_covered_foreign_key_index


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        drop_covered_foreign_key_index(
            "accounts",
            "apikey",
            "user",
            settings.AUTH_USER_MODEL,
            "api_keys",
            "accounts_apikey_user_id_bd902026",
        )
    ]
