"""The Label Studio-facing service: HTTP endpoints, the Label Studio client and the
background loop that turns annotations into an active-learning order.

The ML core (``model/``) never imports from here; this package adapts Label Studio's
protocol to it.
"""
