"""The stream-processing side of freshet, in four layers.

- ``streams.core``: pure rules and processors. State updates, the ingest processor, the
  debouncer, micro-batch merging, the live scorer, one publish path, catalog records.
  No Faust, Kafka or Redis client, no settings, no environment: every part takes a
  small frozen config and plain values or protocols.
- ``streams.kafka_io``: Kafka adapters (client configs, the event producer, topic
  reading, group membership). They may import ``streams.core``, never ``redis_io``.
- ``streams.redis_io``: Redis adapters (clients, the fenced state store, the catalog
  store, key layout, generations, the state guard). They may import ``streams.core``,
  never ``kafka_io``.
- ``streams.runtime``: the Faust worker that wires the three together (the app and its
  agents, the async shell around the live scorer, metrics, replay, waiting for
  services). Only ``freshet`` (the CLI, the composition root) imports it.

``tests/test_layering.py`` checks these rules on every run.
"""
