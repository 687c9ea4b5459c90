"""The dispatcher's parts, one concept a module (``actors/dispatcher.py`` wires them)."""
