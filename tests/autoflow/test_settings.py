"""Bad configuration stops the process at start, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import BASE_DIR

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "s" * 50,
    "JWT_SIGNING_KEY": "j" * 50,
    "AUTOFLOW_ENCRYPTION_KEY": "aGlcXOFaNkJNrlZbI8FkSAYQ43XjMCWI82gQdJw0gkw=",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/autoflow_settings_check",
    "REDIS_URL": "redis://127.0.0.1:6379/1",
}


def _setup(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    return _run("import django; django.setup()", overrides)


def _run(code: str, overrides: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in PRODUCTION and not name.startswith(("RATE_LIMIT", "AUTOFLOW"))
    }
    env.update(PRODUCTION)
    env["DJANGO_SETTINGS_MODULE"] = "autoflow.settings"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_complete_production_configuration_starts():
    result = _setup()
    assert result.returncode == 0, result.stderr


def test_production_web_process_tunes_the_collector_and_caches_through_shared_clients():
    result = _run(
        "import gc, autoflow.asgi; from django.core.cache import caches; "
        "print(gc.get_threshold()[0], gc.get_freeze_count(), type(caches['default']).__module__)",
        {},
    )
    assert result.returncode == 0, result.stderr
    threshold, frozen, cache_module = result.stdout.split()
    assert int(threshold) == 10_000
    assert int(frozen) > 50_000  # Django, the apps and the middleware, loaded by the import
    assert cache_module == "autoflow.cache"


@pytest.mark.parametrize(("value", "threshold"), [(None, "5"), ("true", "5"), ("false", "None")])
def test_prepared_statements_are_on_unless_switched_off_for_a_pooler(value, threshold):
    code = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])"
    result = _run(f"import django; django.setup(); {code}", {"DATABASE_PREPARED_STATEMENTS": value})
    assert result.returncode == 0, result.stderr
    assert f"'prepare_threshold': {threshold}" in result.stdout


@pytest.mark.parametrize(
    "variable", ["SECRET_KEY", "AUTOFLOW_ENCRYPTION_KEY", "JWT_SIGNING_KEY", "REDIS_URL"]
)
def test_missing_production_setting_names_the_variable(variable):
    result = _setup(**{variable: None})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{variable} is required" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("RATE_LIMIT_AUTH", "abc"),
        ("RATE_LIMIT_GENERAL", "100 per minute"),
        ("MAX_REQUEST_BYTES", "lots"),
        ("ACCESS_TOKEN_MINUTES", "fifteen"),
        ("TRUSTED_PROXY_COUNT", "-1"),
        ("WORKER_CONCURRENCY", "0"),
        ("AUTOFLOW_ENCRYPTION_KEY", "too-short"),
        ("DATABASE_URL", "nosuchscheme://x"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_malformed_setting_names_the_variable(variable, value):
    result = _setup(**{variable: value})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert variable in last_line


def test_env_example_lists_every_variable_settings_reads():
    import re

    source = (BASE_DIR / "autoflow" / "settings.py").read_text()
    read = set(
        re.findall(
            r"""(?:env_bool|env_int|env_list|env_rate|env_size|env\.str|_secret)\(\s*"([A-Z_]+)\"""",
            source,
        )
    )
    example = (BASE_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z_]+)=", example, flags=re.MULTILINE))
    assert read, "no variables found in settings.py"
    assert read - listed == set()
