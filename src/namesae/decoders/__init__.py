"""Image decoders behind one small interface: Kandinsky 2.2 and Stable Diffusion 2.1 unCLIP, conditioned on CLIP
image embeddings (`image_embeds=`), with seeded, reproducible calls.

    decoder = load_decoder("kandinsky22")                                  # hub ids (decoder + prior)
    decoder = load_decoder("sd21-unclip", "stabilityai/stable-diffusion-2-1-unclip", device="cuda", dtype="float16")
    decoder = load_decoder("kandinsky22", "runs/tiny-k22")                 # a folder `build_tiny_pipeline` wrote
    images = decoder.decode(x, seeds=[0, 1])        # x: [n, d] in the decoder's space -> n PIL images
    images = decoder.generate(["a photo of Vicki"] * 2, seeds=[0, 1])     # text -> image (Kandinsky: via the prior)
    x = decoder.embed_prompts(["a photo of Vicki"], seeds=[0])            # Kandinsky prior: text -> image embedding

Every image has its own CPU `torch.Generator` seeded with its seed (the prior and the decoder each get a fresh one),
so a seed gives the same image whatever the batch it is drawn in, up to floating-point differences of batched
kernels. A decoder knows its embedding `space` (the store space of the embeddings it expects, e.g.
`open_clip:ViT-bigG-14:laion2b_s39b_b160k:image`) and `dim`; `check_decoder_space` refuses an SAE or store from another.
Folders written by namesae carry `namesae_decoder.json` (kind, space, dim, image encoder, default settings).

Modules: `spaces.py` (pipeline kinds, DecodeSettings, DecoderInfo, the space a decoder expects, namesae_decoder.json;
no torch), `real.py` (the Decoder classes and `load_decoder`), `tiny.py` (tiny random pipelines built offline, for
tests and the demo; `resolve_model("tiny:DIR")` builds one on first use), `images.py` (PNGs with metadata, grids).
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".images": ("image_grid", "read_png_metadata", "write_png"),
    ".real": (
        "Decoder", "KandinskyDecoder", "UnclipDecoder", "load_decoder", "quiet_loading", "resolve_model",
    ),
    ".spaces": (
        "HUB_MODELS", "KIND_DEFAULTS", "META_FILE", "PIPELINES", "DecoderError", "DecoderInfo",
        "DecodeSettings", "DrawSettings", "check_decoder_space", "describe_decoder", "encoder_for_space",
        "info_dict", "read_meta",
    ),
    ".tiny": (
        "TINY_DEFAULTS", "build_tiny_pipeline", "clip_tokenizer", "default_tiny_space", "tiny_kandinsky",
        "tiny_unclip", "write_clip_tokenizer_files",
    ),
})
