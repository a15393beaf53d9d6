"""Intake: turn Event Grid events, ACR webhooks and Distribution notifications into PushNotices (pure)."""
