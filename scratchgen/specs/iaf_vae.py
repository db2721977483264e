"""`scratchgen train iaf_vae`: the VAE with an IAF posterior (scratchgen.models.iaf) on binarized MNIST,
trained and scored like `scratchgen train vae` (test ELBO, and the IWAE bound on the NLL with iwae_k > 0)."""
import numpy as np

from ..models.iaf import IAFVAE
from .registry import register
from .vae import VAESpec


@register("iaf_vae")
class IAFVAESpec(VAESpec):
    description = "VAE with an inverse autoregressive flow posterior (Kingma et al. 2016) on binarized MNIST"
    # The KL is always the Monte Carlo estimate (no closed form for a flow posterior), so no `kl` setting.
    defaults = dict({k: v for k, v in VAESpec.defaults.items() if k != "kl"},
                    latent=32, blocks=2, iaf_hidden=None, forget_bias=1.0)
    setting_help = {
        "blocks": "IAF steps after the Gaussian posterior (each a MADE of z and the encoder's context h)",
        "iaf_hidden": "hidden widths of each IAF step's MADE (None: the encoder's `hidden`)",
        "forget_bias": "b in sigma_t = sigmoid(s_t + b): positive starts each IAF step near the identity",
    }

    def build(self):
        c = self.config
        self.noise = np.random.default_rng(c["seed"] + 1)
        return IAFVAE(784, c["hidden"], c["latent"], num_steps=c["blocks"], iaf_hidden=c.get("iaf_hidden"),
                      forget_bias=c["forget_bias"], likelihood=c["likelihood"], sigma=c.get("sigma"),
                      beta=c["beta"], warmup_steps=c["warmup_steps"], activation=c["activation"])
