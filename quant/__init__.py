"""llamalite.quant: model quantization (float weights -> GGUF block types).

reference.py is a numpy reference of the block quantizers in the C++ core
(llamalite._core.quantize_rows), bit-identical to llama.cpp's.
"""
