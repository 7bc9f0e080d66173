"""The HTTP server: FastAPI app factory, routes, auth, limits, observability.

Routes parse and validate at the edge, call one service function, and leave error mapping to
``errors.py``.
"""
