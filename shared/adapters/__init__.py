"""Adapters: the only code that talks to the world (Table Storage, registries, Azure ML, Event Grid)."""
