"""llamalite.quant: model quantization (float weights -> GGUF block types).

plan.py: llama-quantize's file types and per-tensor type rules; quantize.py with
gguf_writer.py: the streaming writer behind `llamalite quantize`; imatrix.py and
imatrix_file.py: importance matrices (`llamalite imatrix`, llama.cpp's file formats).
reference.py is a numpy reference of the block quantizers in the C++ core
(llamalite._core.quantize_rows), bit-identical to llama.cpp's.
"""
