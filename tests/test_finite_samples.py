"""A flow whose inverse overflows: samples.png is still written, the non-finite samples are counted
in one line on stderr with the fix, and no NumPy RuntimeWarning reaches the user."""
import warnings

import pytest

import scratchgen as sg
from scratchgen.models.glow import Glow
from scratchgen.models.maf import MAF
from scratchgen.specs import create


def overflowing_glow():
    model = Glow((1, 28, 28), levels=2, steps=1, channels=4, logit_alpha=0.05)
    out = model.levels[0][0].coupling.net.out   # scales exp(-1000): the inverse multiplies by exp(1000)
    out.bias.data[:out.bias.shape[0] // 2] = -1000.0
    return create("glow", {"channels": 4, "couplings": 1}), model, "--set temperature=0.5"


def overflowing_maf():
    model = MAF(784, num_mades=2, hidden_sizes=(16,))
    model.eval()
    model.mades[0].alpha_out.bias.data[...] = 1000.0   # the inverse scales by exp(1000)
    return create("maf", {"hidden": [16]}), model, "Train longer"


@pytest.mark.parametrize("build", [overflowing_glow, overflowing_maf])
def test_samples_that_overflow_are_reported_not_hidden(build, tmp_path, capsys):
    with sg.no_grad():
        spec, model, advice = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = spec.sample(model, 4, str(tmp_path / "samples.png"))
    err = capsys.readouterr().err
    assert "of 4 samples are not finite" in err and "samples.png" in err and advice in err
    assert open(path, "rb").read(4) == b"\x89PNG"
