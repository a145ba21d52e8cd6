"""JAX inference: KV-cache generation for the student and the Whisper cascade (`generate`), and
audio that enters the cache while it is still being recorded (`streaming`)."""
