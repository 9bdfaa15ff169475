"""Built-in node types; each module registers one type."""
