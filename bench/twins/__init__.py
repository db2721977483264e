"""PyTorch twins of `scratchgen train <model>`: whole CLI runs, for bench/cli_epoch.py.

    python bench/twins/cli.py <model> --epochs 1 --out DIR [--limit-train N] [--limit-eval N]

One subcommand per model (made, vae, nice, gan, wgan_gp, dcgan, pixelcnn, gated_pixelcnn); cli.py's
docstring says what each one mirrors and where the work differs. The networks come from the
existing twins (bench/torch_models.py, torch_vae.py, torch_gan.py, torch_dcgan.py, torch_pixelcnn.py).
runner.py is the run around a twin (`scratchgen train`'s fit); standalone.py what the twins in
their own scripts (bench/torch_realnvp.py, torch_maf.py) share: scratchgen's weights copied in,
its initial state built in a subprocess, the check's comparisons, the train subcommand.
"""
