"""The floor's settings: AutoFlow's, with `bench.floor_app` as the URLconf."""

from autoflow.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_app"
