"""Saved by astronn_gaiacal 0.1.0 before the package re-layout (commit cdee452)."""
import sys, os, json
import numpy as np
import astronn_gaiacal
from astronn_gaiacal._compat import keras
from astronn_gaiacal.models import DenseGaiaBNN, DeepEnsemble
out = sys.argv[1]
rng = np.random.default_rng(1)
n, d = 300, 12
x = rng.normal(size=(n, d)).astype(np.float32)
logl = 1.5 + 0.2 * x[:, 0]
mag = rng.uniform(8, 12, n)
plx_true = 10**logl * 10**(-mag/5)
err = np.full(n, 0.03)
g = mag + 2.5; bprp = rng.uniform(1, 2.5, n); teff = rng.uniform(4000, 5200, n)
plx = plx_true - 0.05 + rng.normal(0, err)
feats = {"phot_g_mean_mag": g, "bp_rp": bprp, "teff": teff}
np.savez(os.path.join(out, "inputs.npz"), x=x[:20], mag=mag[:20], g=g[:20], bp_rp=bprp[:20], teff=teff[:20])
record = {}
def train(offset, seed):
    keras.utils.set_random_seed(seed)
    m = DenseGaiaBNN(hidden=(16, 8), offset=offset)
    m.max_epochs = 2
    kw = dict(spectra=x, parallax=plx, parallax_error=err, magnitude=mag)
    if offset == "multivariate":
        kw["offset_features"] = feats
    m.fit(**kw)
    return m
for offset in ("constant", "multivariate"):
    m = train(offset, 0)
    folder = os.path.join(out, f"dense_{offset}")
    m.save(folder)
    w = m.keras_model.get_weights()
    record[f"dense_{offset}"] = {"weight_sums": [float(np.sum(a, dtype=np.float64)) for a in w]}
ens = DeepEnsemble([train("constant", 10), train("constant", 11)])
ens.save(os.path.join(out, "dense_ensemble"))
record["dense_ensemble"] = {"member_weight_sums": [[float(np.sum(a, dtype=np.float64)) for a in mm.keras_model.get_weights()] for mm in ens.members]}
json.dump(record, open(os.path.join(out, "expected.json"), "w"), indent=1)
print(inspect := sorted(os.listdir(out)))
