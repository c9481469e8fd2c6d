"""The daemon and what runs around it: the service, health, metrics, systemd, the demo."""
