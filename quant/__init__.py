"""Quantization: numpy reference quantizers and the tool that writes GGUF files."""
