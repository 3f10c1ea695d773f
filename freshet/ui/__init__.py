"""The web view's pure logic: what the page shows, computed from what workers export.

``overview`` turns scraped worker metrics into rates, freshness quantiles and shares;
``views`` shapes a user's state, a list change, an item and a dead letter for the page.
Nothing here does I/O; ``freshet.api.ui_routes`` serves the page and
``freshet.api.ui_sources`` reads Redis, Kafka and the metrics endpoints.
"""
