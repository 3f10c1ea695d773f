"""Redis adapters: clients, key layout, the fenced state store, the catalog store."""
