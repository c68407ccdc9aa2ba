"""Request and response bodies of the native API."""
