"""hf-qkdelay: upper-layer Q/K learning-rate delay for Hugging Face Trainer pretraining."""
