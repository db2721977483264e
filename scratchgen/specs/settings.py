"""The settings a registered model accepts (`scratchgen train NAME --set KEY=VALUE`): their meaning,
and the check that turns a user's mistake into a one-line error instead of a silent no-op.

A model's settings are its config keys (`ModelSpec.BASE_DEFAULTS`, its `defaults`, and its
`options`: keys with a fallback in the code). A value must have its default's type: a number
where the default is a number, true/false for a flag, a list for a list; a setting whose default
is None takes anything. `scratchgen models NAME` prints the table. A spec explains settings of its
own in its `setting_help` ({key: meaning}); shared ones are explained in MEANING.
"""
import difflib
import numbers

MEANING = {
    # every model
    "epochs": "training epochs (passes over the training set)",
    "batch_size": "examples per training step",
    "lr": "learning rate of the optimizer",
    "seed": "seed of every random stream (weights, batches, noise)",
    "weight_decay": "L2 weight decay of the optimizer",
    "ema": "decay of an exponential moving average of the weights, validated and tested instead of them (0: off)",
    "limit_train": "train on the first N training examples only",
    "limit_eval": "evaluate on the first N examples of each split only",
    "patience": "epochs without a better validation metric before stopping (0: never stop early)",
    "device": "cpu or cuda",
    # optimizers and schedules
    "betas": "Adam's (beta1, beta2)",
    "optimizer": "adam or rmsprop",
    "schedule": "learning-rate schedule, stepped per epoch: none, cosine or linear (both to 0 over the run)",
    "lr_step": "epoch at which the learning rate drops tenfold (0: never)",
    "warmup_steps": "steps over which the KL weight rises from 0 to beta (KL warm-up; 0: off)",
    # MLP sizes and layers
    "hidden": "hidden layer width(s)",
    "hidden_layers": "hidden layers per coupling network",
    "activation": "hidden activation: relu, tanh, softplus, ...",
    "dropout": "dropout probability in the hidden layers",
    "augment": "random affine augmentation of the training digits",
    # MADE
    "num_masks": "mask sets (orderings and connectivities) cycled during training and averaged at test time",
    "resample_every": "training steps between mask changes",
    "natural_ordering": "generate pixels in raster order instead of a random ordering",
    "direct_connection": "add a masked linear map from inputs to outputs",
    # NICE
    "couplings": "coupling layers",
    "coupling": "coupling law: additive (NICE) or affine",
    "prior": "base distribution: logistic or gaussian",
    "scale_init": "start of NICE's diagonal scaling S: zero (the paper) or data (fitted on 1,000 training digits)",
    # VAE
    "latent": "dimension of the latent z",
    "likelihood": "decoder distribution: bernoulli or gaussian",
    "sigma": "fixed standard deviation of a gaussian decoder (None: learned)",
    "kl": "KL term: analytic, or a Monte Carlo estimate (mc)",
    "beta": "weight of the KL term (beta-VAE; 1 is the ELBO)",
    "binarization": "binarized MNIST: fixed (Larochelle's file) or dynamic (resampled every epoch from grey MNIST)",
    "iwae_k": "importance samples for the IWAE bound on the test set (0: ELBO only; 5000 for the standard NLL)",
    "iwae_batch": "examples per batch of the IWAE evaluation (None: chosen from iwae_k)",
    "iwae_splits": "splits scored with the IWAE bound",
    # conv models
    "channels": "feature channels of the convolutional layers",
    "blocks": "residual blocks",
    "layers": "gated layers",
    "out_channels": "channels of the output head",
    # GANs
    "latent_dim": "dimension of the generator's noise z",
    "g_hidden": "generator hidden widths",
    "d_hidden": "discriminator hidden widths",
    "d_dropout": "dropout probability in the discriminator",
    "d_spectral_norm": "spectral normalisation of the discriminator's layers",
    "generator_loss": "non_saturating (-log D(G(z))) or minimax (log(1 - D(G(z))))",
    "label_smoothing": "one-sided label smoothing of the real targets",
    "loss": "game: bce (the GAN's) or hinge",
    "n_critic": "discriminator (critic) steps per generator step",
    "clip_value": "WGAN weight clipping bound",
    "gp_weight": "WGAN-GP gradient-penalty weight (lambda)",
    "objective": "game: gan, wgan or wgan_gp",
    "metric": "validation metric: fid, or none (no classifier, no FID/IS)",
    "eval_samples": "generated samples per FID/IS evaluation",
    "parzen_samples": "samples for the Parzen-window test log-likelihood (0: skip)",
    "codes": "categorical code size of InfoGAN",
    "info_weight": "weight of InfoGAN's mutual-information term",
    # toy data
    "toy": "toy data set: eight_gaussians, twentyfive_gaussians, swiss_roll, ...",
    "n_train": "training points drawn from the toy distribution",
}


class SettingError(ValueError):
    """A --set key the model does not have, or a value of the wrong type."""


def settings_of(spec):
    """{key: default} of every setting the spec's model accepts, sorted by key."""
    keys = dict(getattr(spec, "options", {}) or {})
    keys.update(spec.config)
    for k in ("limit_train", "limit_eval", "patience", "device"):
        keys.setdefault(k, None)
    return dict(sorted(keys.items()))


def _type_name(default):
    if isinstance(default, bool):
        return "true/false"
    if isinstance(default, numbers.Integral):
        return "integer"
    if isinstance(default, numbers.Real):
        return "number"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, str):
        return "text"
    return "any"


def _fits(value, default):
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, numbers.Integral):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(default, numbers.Real):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def check_settings(model, spec, given):
    """Raise SettingError naming the first unknown key (with the nearest known one) or ill-typed
    value among `given` ({key: parsed value})."""
    known = settings_of(spec)
    for key, value in given.items():
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SettingError(f"model {model!r} has no setting {key!r}{hint} "
                               f"(`scratchgen models {model}` lists them)")
        if not _fits(value, known[key]):
            raise SettingError(f"{key}={value!r}: expected {_type_name(known[key])} like its default "
                               f"{known[key]!r} (`scratchgen models {model}` lists the settings)")


def meaning(spec, key):
    """What setting `key` means: the spec's own `setting_help` entry, else the shared table."""
    return {**MEANING, **(getattr(spec, "setting_help", None) or {})}.get(key, "")


def describe_settings(spec):
    """Rows (key, type, default, meaning) for `scratchgen models NAME`."""
    return [(k, _type_name(v), "None" if v is None else repr(v), meaning(spec, k))
            for k, v in settings_of(spec).items()]
