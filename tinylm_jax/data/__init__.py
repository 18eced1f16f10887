"""Data pipeline: corpora (TFDS/ArrayRecord), SentencePiece, packing, Grain loaders.

Import the modules themselves (`tinylm_jax.data.pipeline`, `.config`, `.tokenizer`, ...): the
package imports nothing, so the light `DataConfig` never pulls in TFDS, Grain or Orbax.
"""
