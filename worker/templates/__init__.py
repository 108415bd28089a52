"""What the worker's jobs show to people: e-mail bodies and money amounts.

Plain ``string.Template`` with every substituted value HTML-escaped: no template engine,
and no way for a display name or an order reference to inject markup into a message.
"""
