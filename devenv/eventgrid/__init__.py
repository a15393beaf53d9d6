"""A local stand-in for an Event Grid custom topic: publish endpoint, webhook subscriptions with the
validation handshake, at-least-once delivery with retries, dead-lettering, and a chaos mode.

Start it with `devenv.eventgrid.launcher.start_eventgrid`, or `python -m devenv.eventgrid --config <file>`.
"""
