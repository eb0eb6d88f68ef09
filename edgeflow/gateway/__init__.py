"""The gateway's web server (aiohttp + uvloop): dashboard, MJPEG and WebSocket video, REST, Prometheus
metrics.

``WebInterface`` (in ``edgeflow.nodes.gateway.interfaces.web``) describes the server and names
``edgeflow.gateway.app:serve``; the runtime imports that inside the gateway node's process. The node layer
never imports this package.

Modules: ``app`` (Application factory, Server, serve), ``hub`` (newest frame per topic, encode-once JPEG
cache, viewer fan-out), ``routes`` (REST, health, /metrics, dashboard), ``stream`` (MJPEG, WebSocket),
``metrics`` (Prometheus text from the statistics snapshot), ``static/`` (the dashboard page).
"""
