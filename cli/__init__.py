"""The `llamalite` command."""
