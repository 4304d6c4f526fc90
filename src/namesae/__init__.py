"""namesae: sparse autoencoders on CLIP embeddings of names."""

__version__ = "0.1.0"
