"""`scratchgen train glow`: Glow (scratchgen.models.glow) on dequantized MNIST images, test
negative log-likelihood in nats and bits/dim. Data, loss, evaluation and pictures are RealNVP's.

Learning-rate warm-up (`warmup`, as the paper's code): over the first `warmup` training steps the
rate rises linearly from lr / warmup to lr. Its step count is saved with the checkpoint, so
--resume continues the ramp where it stopped."""
from ..models.glow import Glow
from .realnvp import RealNVPSpec
from .registry import register


@register("glow")
class GlowSpec(RealNVPSpec):
    description = "Glow (actnorm, LU 1x1 convolutions, affine couplings) on dequantized MNIST, test NLL and bits/dim"
    # 8 steps per level, RealNVP's logit pre-processing and a one-epoch warm-up: the best of what was
    # measured on MNIST at RealNVP's budget (docs/models/realnvp.md); logit_alpha=0 is the paper's x - 1/2
    defaults = dict(epochs=10, batch_size=64, lr=1e-3, levels=2, channels=64, couplings=8, temperature=0.7,
                    logit_alpha=0.05, split_prior=True, warmup=800)
    setting_help = {
        "levels": "levels L of the multi-scale flow (each: squeeze, K steps of flow, factor out half but the last)",
        "channels": "hidden channels of each coupling's network",
        "couplings": "steps of flow K per level (actnorm, 1x1 convolution, affine coupling)",
        "logit_alpha": "a number a: RealNVP's logit(a + (1 - 2a) x) with its log-det (RealNVP's 0.05); "
                       "0: the flow sees x - 1/2 (the paper)",
        "split_prior": "true: each factored-out half gets a learned Gaussian prior given the kept half (the "
                       "paper's code); false: a standard normal",
        "warmup": "training steps over which the learning rate rises linearly to lr (0: none)",
        "temperature": "standard deviation of z when drawing samples.png (the paper shows 0.7; 1: the model's density)",
    }

    def make_model(self):
        c = self.config
        return Glow((1, 28, 28), levels=c["levels"], steps=c["couplings"], channels=c["channels"],
                    logit_alpha=c.get("logit_alpha") or None, split_prior=bool(c.get("split_prior", True)))

    def build(self):
        self.steps = 0   # training steps done: the warm-up's clock (saved)
        return super().build()

    def training_step(self, model, batch, optimizer):
        warmup = int(self.config.get("warmup") or 0)
        if self.steps <= warmup:   # the ramp, then lr itself once (an epoch schedule takes over from there)
            for group in optimizer.param_groups:
                group["lr"] = float(self.config["lr"]) * min(1.0, (self.steps + 1) / max(warmup, 1))
        self.steps += 1
        return super().training_step(model, batch, optimizer)

    def training_state(self, model):
        return {**super().training_state(model), "steps": self.steps}

    def load_training_state(self, model, state):
        super().load_training_state(model, state)
        self.steps = int(state.get("steps", 0))
