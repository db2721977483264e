"""`scratchgen train glow`: Glow (scratchgen.models.glow) on dequantized MNIST images, test
negative log-likelihood in nats and bits/dim. Data, loss, evaluation and pictures are RealNVP's."""
from ..models.glow import Glow
from .realnvp import RealNVPSpec
from .registry import register


@register("glow")
class GlowSpec(RealNVPSpec):
    description = "Glow (actnorm, LU 1x1 convolutions, affine couplings) on dequantized MNIST, test NLL and bits/dim"
    defaults = dict(epochs=10, batch_size=64, lr=1e-3, levels=2, channels=64, couplings=4, temperature=0.7,
                    logit_alpha=None)
    setting_help = {
        "levels": "levels L of the multi-scale flow (each: squeeze, K steps of flow, factor out half but the last)",
        "channels": "hidden channels of each coupling's network",
        "couplings": "steps of flow K per level (actnorm, 1x1 convolution, affine coupling)",
        "logit_alpha": "None: the flow sees x - 1/2 (the paper); a number a: RealNVP's logit(a + (1 - 2a) x) "
                       "with its log-det (RealNVP uses 0.05)",
        "temperature": "standard deviation of z when drawing samples.png (the paper shows 0.7; 1: the model's density)",
    }

    def make_model(self):
        c = self.config
        return Glow((1, 28, 28), levels=c["levels"], steps=c["couplings"], channels=c["channels"],
                    logit_alpha=c.get("logit_alpha"))
