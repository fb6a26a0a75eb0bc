"""Quantization: llama-quantize's type rules, the streaming GGUF writer, importance matrices."""
