"""The lab's policy as data: schema, loader and rule engine (grown by later issues)."""

__all__: list[str] = []
