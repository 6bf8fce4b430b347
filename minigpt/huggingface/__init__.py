"""Hugging Face's model directories, in (`gpt2`) and out (`export`)."""
