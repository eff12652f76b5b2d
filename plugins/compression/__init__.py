"""First-party compression plugins (quantization, mixed precision, pruning, distillation) and
the named helper modules they share. No compressor imports another compressor's module."""
