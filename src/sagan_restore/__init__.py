"""sagan-restore: denoise and upscale images with a self-attention U-Net GAN.

    from sagan_restore import Enhancer
    enhancer = Enhancer.load("runs/demo", device="auto")
    clean = enhancer.enhance(noisy)  # PIL image or numpy array in, the same kind out
"""

__all__ = ["Enhancer"]


def __getattr__(name: str):
    # Imported on first use: `import sagan_restore` (and `sagan-restore --help`) need not load torch.
    if name == "Enhancer":
        from sagan_restore.infer.enhance import Enhancer

        return Enhancer
    raise AttributeError(f"module 'sagan_restore' has no attribute {name!r}")
