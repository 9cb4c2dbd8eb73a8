"""Our hand-written batched augmentation against kornia.augmentation doing the same steps.

    pip install kornia && python benchmarks/augment_kornia.py [--threads N] [--device cpu|cuda]

Both make two views of a uint8 batch of MNIST-sized images with per-image parameters: random
affine (rotation, shift, zoom, shear), contrast, erasing, Gaussian noise. Prints JSON: views
per second for each, and the ratio. kornia is not a dependency of pretext.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

# benchmarks/ is on sys.path when run as a script
from throughput import environment, interleaved, sync

from pretext.allocator import keep_freed_memory
from pretext.augment import make_views, preset
from pretext.config import resolve_device


def kornia_pipeline(device: torch.device):
    import kornia.augmentation as K

    aug = preset("default")
    return torch.nn.Sequential(
        K.RandomAffine(
            degrees=aug.degrees,
            translate=(aug.translate, aug.translate),
            scale=aug.scale,
            shear=aug.shear,
            p=1.0,
        ),
        K.RandomContrast(contrast=(1 - aug.contrast, 1 + aug.contrast), p=1.0),
        K.RandomErasing(scale=aug.erase_area, p=aug.erase_p),
        K.RandomGaussianNoise(std=aug.noise_std, p=aug.noise_p),
        K.Normalize(mean=torch.tensor([aug.mean]), std=torch.tensor([aug.std])),
    ).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default="32,256,512")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as pretraining does, for both sides alike
    pipeline = kornia_pipeline(device)
    # The same steps on both sides: without the elastic distortion, which the kornia pipeline
    # does not have (kornia's RandomElasticTransform filters a full-size field per image).
    ours_aug = replace(preset("default"), elastic=0.0)
    generator = torch.Generator(device).manual_seed(0)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, device=device)

        def ours(images=images) -> None:
            make_views(images, ours_aug, generator)

        def kornia(images=images) -> None:
            x = images.float() / 255
            pipeline(x), pipeline(x)

        # Alternating blocks, so that a slow spell of the machine hits both sides alike.
        rates = interleaved({"ours": ours, "kornia": kornia}, device, 2 * args.seconds)
        ours_rate, kornia_rate = 2 * batch * rates["ours"], 2 * batch * rates["kornia"]
        rows.append(
            {
                "batch_size": batch,
                "pretext_views_per_s": round(ours_rate),
                "kornia_views_per_s": round(kornia_rate),
                "pretext_over_kornia": round(ours_rate / kornia_rate, 2),
            }
        )
    sync(device)
    import kornia as kornia_module

    print(
        json.dumps(
            {
                "device": str(device),
                **environment(),
                "kornia": kornia_module.__version__,
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
