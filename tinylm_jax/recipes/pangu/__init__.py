"""PanGu-π Pro (arXiv 2402.02791): tokenizer compression, parameter inheritance by layer
selection and width pruning (importance metrics, learned masks)."""
