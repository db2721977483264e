"""`scratchgen train pixelvae`: PixelVAE (scratchgen.models.pixelvae) on Larochelle's binarized MNIST
(the gated_pixelcnn spec's data): the test ELBO, and the IWAE bound on the test NLL with eval_k
importance samples; samples.png drawn z ~ N(0, I), then pixel by pixel."""
import numpy as np

from ..grad_mode import no_grad
from ..models.pixelvae import PixelVAE
from ..random import Generator
from .pixelcnn import BinarizedMNISTAutoregressiveSpec
from .registry import register


@register("pixelvae")
class PixelVAESpec(BinarizedMNISTAutoregressiveSpec):
    description = ("PixelVAE (Gulrajani et al. 2017): conv encoder, Gated PixelCNN decoder conditioned on z; "
                   "test ELBO and IWAE NLL")
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, latent=32, hidden=256, channels=32, layers=4, out_channels=64,
                    conditioning="upsample", maps=16, warmup=0, free_bits=0.0, eval_k=20, eval_batch=256)
    setting_help = {
        "conditioning": "how z enters every gated layer: upsample (z -> image-size feature maps, a 1x1 conv "
                        "into each gate) or linear (a linear map of z, one bias per channel: no upsampling)",
        "channels": "channels p of each of the decoder's two gated stacks (vertical and horizontal)",
        "layers": "gated layers of the decoder (the first one the 'A' layer that hides the pixel itself)",
        "maps": "feature maps of image size the upsampling network makes from z (conditioning=upsample)",
        "hidden": "hidden width of the encoder's and the upsampling network's fully connected layer",
        "warmup": "KL warm-up: training steps (batches) over which the KL weight rises linearly from 0 to 1 "
                  "(0: off); validation and test always use the full ELBO",
        "free_bits": "free bits (Kingma et al. 2016): nats of KL per latent dimension that the training loss "
                     "does not charge for (a floor on each dimension's batch-mean KL; 0: off); against "
                     "posterior collapse. Validation and test score the true ELBO",
        "eval_k": "importance samples per test image for the IWAE bound on the test NLL (5000 is the papers' "
                  "estimate, but each sample is a full PixelCNN pass: hours per 1,000 images on a CPU; 0: ELBO only)",
        "eval_batch": "decoder images per pass of the IWAE evaluation (samples x images; bounds its memory)",
    }
    monitor = ("valid_elbo", "max")
    n_samples = 64
    eval_images = 100   # images per ELBO pass

    def build(self):
        c = self.config
        return PixelVAE(latent=c["latent"], hidden=c["hidden"], channels=c["channels"], layers=c["layers"],
                        conditioning=c["conditioning"], maps=c["maps"], out_channels=c["out_channels"],
                        warmup=c["warmup"], free_bits=c.get("free_bits") or 0.0)

    def loss(self, model, batch):
        return model.training_loss(batch[0])

    def training_step(self, model, batch, optimizer):
        """One gradient step on the warm-up-weighted bound, then the warm-up clock moves one step."""
        out = super().training_step(model, batch, optimizer)
        model.advance()
        return out

    @no_grad()
    def evaluate(self, model, split):
        """{split}_elbo (beta = 1, one z per image, fixed noise), {split}_kl and {split}_rec; on the
        test split with eval_k > 0 also test_nll_iwae = -L_k, mean over images."""
        from ..progress import progress
        x = self._split(split)
        g = Generator(0)
        b = self.eval_images
        elbo = rec = kl = 0.0
        for i in range(0, len(x), b):
            e, r, k = model.elbo(x[i:i + b], generator=g, return_terms=True)
            elbo, rec, kl = elbo + float(e.sum().item()), rec + float(r.sum().item()), kl + float(k.sum().item())
        metrics = {f"{split}_elbo": elbo / len(x), f"{split}_rec": rec / len(x), f"{split}_kl": kl / len(x)}
        k = int(self.config.get("eval_k") or 0)
        if k > 0 and split == "test":
            rows = max(1, int(self.config.get("eval_batch") or 256))
            per = max(1, min(len(x), rows // k))          # images per pass: several when k is small
            chunk = max(1, min(k, rows // per))           # samples per decoder batch
            total = 0.0
            g = Generator(1)
            steps = progress(range(0, len(x), per), total=-(-len(x) // per), desc=f"IWAE k={k}")
            for i in steps:
                total += float(np.sum(model.log_likelihood(x[i:i + per], k=k, batch=chunk, generator=g)))
            metrics["test_nll_iwae"] = -total / len(x)
            metrics[f"{split}_eval_k"] = k
        return metrics
