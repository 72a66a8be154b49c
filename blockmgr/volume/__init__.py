"""The volume worker: thin manager endpoints, resource locks, capacity, crash recovery."""
