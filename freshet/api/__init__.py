"""The HTTP read API: each user's latest list from Redis, cold start for the rest.

``create_app`` (in ``freshet.api.app``) builds the aiohttp application; ``freshet api``
serves it. The routes and their shapes are written down in ``openapi.json``.
"""
