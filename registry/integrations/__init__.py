"""Bridges from the registry to other tools' loops (torch's DataLoader, ...).

Each submodule imports its tool; ``import registry`` imports none of them.
"""
