"""AutoAL ML core: encoders, task model, query strategies and the AutoAL search.

Never imports Label Studio: the service in ``autoal_backend`` adapts Label Studio to this core.
"""
