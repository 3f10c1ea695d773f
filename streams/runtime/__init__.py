"""The Faust worker: the app and its agents, the live scorer's async shell, replay."""
