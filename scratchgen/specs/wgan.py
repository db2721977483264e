"""`scratchgen train wgan`, `wgan_gp` (MNIST) and `wgan_gp_toy`, `wgan_toy`, `gan_toy` (2-D toy
sets): the objectives of scratchgen.models.wgan in gan.py's adversarial training, with each
paper's optimizer settings; the toy runs are scored by mode coverage and drawn with the critic."""
import numpy as np

from ..grad_mode import no_grad
from ..models.wgan import WGAN, make_objective, toy_networks
from ..tensor import tensor
from .gan import MNIST_DEFAULTS, AdversarialSpec, MNISTAdversarialSpec
from .registry import register

OPTIMIZERS = {"gan": dict(optimizer="adam", lr=1e-4, betas=[0.5, 0.9], n_critic=1),
              "wgan": dict(optimizer="rmsprop", lr=5e-5, n_critic=5),
              "wgan_gp": dict(optimizer="adam", lr=1e-4, betas=[0.5, 0.9], n_critic=5)}


# -- MNIST ------------------------------------------------------------------------------------------
class MNISTWGANSpec(MNISTAdversarialSpec):
    kind = "wgan"
    monitor = ("valid_fid", "min")

    def objective(self, G, D, num_classes):
        c = self.config
        return make_objective(self.kind, G, D, c["latent_dim"], num_classes, c["n_critic"], c.get("clip_value", 0.01),
                              c.get("gp_weight", 10.0))


@register("wgan")
class WGANSpec(MNISTWGANSpec):
    description = "WGAN with weight clipping on MNIST, MLPs (RMSProp 5e-5, n_critic 5, clip 0.01)"
    defaults = dict(MNIST_DEFAULTS, **OPTIMIZERS["wgan"], clip_value=0.01, batch_size=5 * 64)
    kind = "wgan"


@register("wgan_gp")
class WGANGPSpec(MNISTWGANSpec):
    description = "WGAN-GP on MNIST, MLPs (lambda 10, n_critic 5, Adam 1e-4 (0.5, 0.9))"
    defaults = dict(MNIST_DEFAULTS, **OPTIMIZERS["wgan_gp"], gp_weight=10.0, batch_size=5 * 64)
    kind = "wgan_gp"


# -- 2-D toy data -----------------------------------------------------------------------------------
def toy_data(name, n, seed):
    from .. import data
    if name not in data.TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; expected one of {sorted(data.TOY_DATASETS)}")
    return data.TOY_DATASETS[name](n, seed=seed)[0]


class ToyAdversarialSpec(AdversarialSpec):
    """GAN / WGAN / WGAN-GP on a 2-D toy set (config `toy`), reported with mode coverage.

    The training set is `n_train` points drawn once (seed = config seed); validation and test
    points are fresh draws. batch_size = n_critic * m (m = 256 in the WGAN-GP toy code)."""

    dataset = "toy"
    kind = "wgan_gp"
    monitor = ("epoch", "max")  # no validation loss for a GAN: keep the last epoch
    n_samples = 2500

    def describe_data(self):
        return f"toy 2-D set {self.config['toy']} ({self.config['n_train']} training points, generated)"

    def build(self):
        c = self.config
        G, D = toy_networks(tuple(c["hidden"]), c["latent_dim"])
        return make_objective(c.get("objective", self.kind), G, D, c["latent_dim"], 0, c["n_critic"],
                              c.get("clip_value", 0.01), c.get("gp_weight", 10.0))

    def train_dataset(self):
        c = self.config
        return (toy_data(c["toy"], int(c["n_train"]), int(c["seed"])),)

    @no_grad()
    def evaluate(self, model, split):
        from .. import metrics, data
        c = self.config
        n = int(c.get("eval_samples", 2500))
        seed = int(c["seed"]) + (1 if split == "valid" else 2)
        real = toy_data(c["toy"], n, seed)
        fake = model.sample(n)
        like = next(model.generator.parameters())
        out = {f"{split}_{k}": v for k, v in model.readouts(model.critic(tensor(real, device=like.device)),
                                                            model.critic(fake)).items()}
        if hasattr(data.TOY_DATASETS[c["toy"]], "centers"):
            cov = metrics.toy_mode_coverage(fake.cpu().numpy(), c["toy"])
            out[f"{split}_modes_covered"] = cov["modes_covered"]
            out[f"{split}_high_quality"] = cov["high_quality"]
        return out

    def sample(self, model, n, path):
        c = self.config
        real = toy_data(c["toy"], n, int(c["seed"]) + 3)
        title = f"{self.name} on {c['toy']}"
        return plot_toy(model, real, model.sample(n).cpu().numpy(), path=path, title=title)


def plot_toy(model, real, fake, path=None, ax=None, title=None, resolution=128, margin=0.6):
    """The WGAN-GP toy figure: the critic's value over the plane as filled contours, real points
    (orange) and generated ones (green). Draws into `ax`, or a new figure written to `path`."""
    import matplotlib.pyplot as plt
    real, fake = np.asarray(real), np.asarray(fake)
    lo = np.minimum(real.min(0), np.percentile(fake, 1, axis=0)) - margin
    hi = np.maximum(real.max(0), np.percentile(fake, 99, axis=0)) + margin
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    like = next(model.discriminator.parameters())
    with no_grad():
        values = model.critic(tensor(grid, device=like.device)).cpu().numpy().reshape(gx.shape)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 5))
    cs = ax.contourf(gx, gy, values, levels=25, cmap="viridis", alpha=0.9)
    ax.contour(gx, gy, values, levels=cs.levels[::3], colors="k", linewidths=0.3, alpha=0.4)
    ax.scatter(real[:, 0], real[:, 1], s=2, c="orange", alpha=0.6, label="data", edgecolors="none")
    ax.scatter(fake[:, 0], fake[:, 1], s=6, c="lime", marker="+", alpha=0.6, label="samples", linewidths=0.6)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if own:
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
        from ..plots import _save
        fig.colorbar(cs, ax=ax, shrink=0.7, label="critic value" if isinstance(model, WGAN) else "D logit")
        return _save(fig, path)
    return ax


TOY_DEFAULTS = dict(toy="eight_gaussians", hidden=[512, 512, 512], latent_dim=2, n_train=65536,
                    epochs=200, batch_size=5 * 256, eval_samples=2500, clip_value=0.01, gp_weight=10.0)


@register("wgan_gp_toy")
class WGANGPToySpec(ToyAdversarialSpec):
    description = "WGAN-GP on 2-D toy data (8/25 Gaussians, Swiss roll; Gulrajani et al. Fig. 1)"
    defaults = dict(TOY_DEFAULTS, **OPTIMIZERS["wgan_gp"], objective="wgan_gp")


@register("wgan_toy")
class WGANToySpec(ToyAdversarialSpec):
    description = "WGAN with weight clipping on 2-D toy data (RMSProp 5e-5, n_critic 5, clip 0.01)"
    defaults = dict(TOY_DEFAULTS, **OPTIMIZERS["wgan"], objective="wgan")
    kind = "wgan"


@register("gan_toy")
class GANToySpec(ToyAdversarialSpec):
    description = "GAN (non-saturating) on 2-D toy data, the same networks and Adam as wgan_gp_toy"
    # batch 256 and one D step per G step: 256 generator steps per epoch, five times the WGANs'
    # 51, so 40 epochs give the same ~10,000 generator steps as their 200.
    defaults = dict(TOY_DEFAULTS, **OPTIMIZERS["gan"], objective="gan", batch_size=256, epochs=40)
    kind = "gan"
