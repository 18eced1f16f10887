"""Hugging Face interop: Llama-format export (`export.py`) and import (`import_hf.py`).

`llama.py` maps configs and parameter layouts, `safetensors_io.py` reads and writes (sharded)
safetensors with numpy, `hf_tokenizer.py` writes tokenizer.json for a SentencePiece model.
None of it needs PyTorch.
"""
