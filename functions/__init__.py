"""Endpoint modules, one per route; the top folder is the surface (client, mitra, shared, internal)."""
