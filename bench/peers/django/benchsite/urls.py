"""No HTTP pages: the benchmark uses only the WebSocket route (chat/routing.py)."""

urlpatterns = []
