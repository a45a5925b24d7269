"""The live service: asyncio wiring of cameras, the model thread, the event bus and the sinks."""
