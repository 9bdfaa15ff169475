"""Built-in node types; each module registers one type."""

from nodes.builtin import condition, debug, delay, email, http, transform, trigger

__all__ = ["condition", "debug", "delay", "email", "http", "transform", "trigger"]
